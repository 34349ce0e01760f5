"""The paper's three annotations of a patch, each with its tier rule, its LMM request and its template sentence.

holistic.py, instance.py, group.py: one annotation each; merge.py: the three into one grounded description;
ask.py: what every request shares; priors.py: the words a prompt points with (and the template's English);
marks.py: the set-of-marks; plan.py: one patch's plan; template_drafter.py: the offline drafter. No file I/O
here: the stages do it.
Import order (one way): priors, marks, ask <- holistic, instance, group, merge <- plan, template_drafter.
"""
