"""`geopixeld eval`: GLaMM's grounded-conversation metrics (METEOR, CIDEr, AP50, mIoU, Recall) for GeoPixelD.

Kept free of imports so that registering the command does not load pycocotools, Java wrappers or torch:
`model.eval.run.evaluate` is the entry point for code, `model.eval.cli.eval_command` for the command line.
"""
