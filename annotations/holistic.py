"""The holistic annotation (GeoPixel, figure 3): a short description of the whole patch.

Every kept patch gets exactly one; it needs nothing planned beyond the patch itself, so it has no tier rule.
The LMM sees the plain patch and the paper's prompt ("Describe the image in four short sentences."); the
template drafter writes four sentences from the plan's objects and priors instead, and takes a caption's opening
summary and closing remark from here.
"""

from __future__ import annotations

from collections import Counter

from prompts import Template
from pipeline.contracts.categories import Vocabulary
from pipeline.contracts.records import PatchPlan

from annotations.ask import PLAIN, Ask, bounded_text, object_schema
from annotations.priors import a, capital, counted, listing, number, percent, pick, verb

DESCRIPTION = bounded_text(800, PLAIN)


def holistic_ask(t: Template) -> Ask:
    """The holistic request: the plain patch, the template as it is, a reply `{"description": ...}`."""
    return Ask("holistic", "", t.render(), object_schema({"description": DESCRIPTION}), "patch", 256)


# What a patch shows, by the category covering most of it (display words; iSAID's, others fall to "scene"):
# the words of the opening sentence and of the closing remark.
SCENE_OF = {
    "plane": "airport", "helicopter": "airport", "ship": "water", "harbor": "harbour",
    "storage tank": "tanks", "tennis court": "sports", "basketball court": "sports", "baseball diamond": "sports",
    "ground track field": "sports", "soccer ball field": "sports", "swimming pool": "residential",
    "bridge": "river", "roundabout": "junction", "small vehicle": "urban", "large vehicle": "urban",
}
_SCENE_WORDS = {
    "airport": ("an airport apron", "part of an airfield"),
    "harbour": ("a harbour", "a waterfront with moorings"),
    "water": ("a stretch of water with boats", "open water with vessels"),
    "tanks": ("an industrial site with storage tanks", "a tank farm"),
    "sports": ("a sports ground", "a set of recreational facilities"),
    "residential": ("a residential neighbourhood", "a residential area with gardens"),
    "river": ("a river crossing", "a stretch of river and its banks"),
    "junction": ("a road junction", "a crossing of roads"),
    "urban": ("an urban area with roads and parking", "a built-up area crossed by roads"),
    "scene": ("a scene on the ground", "an outdoor scene"),
}
_REMARKS = {
    "airport": ("This is likely part of a busy airport.", "The layout suggests an active airfield.",
                "Aprons like this one serve aircraft between flights."),
    "harbour": ("The scene suggests an active port.", "This looks like a working waterfront.",
                "Moorings like these line the shore."),
    "water": ("The water appears calm.", "Vessels like these travel along coasts and rivers.",
              "Traffic on the water seems light."),
    "tanks": ("This is likely an industrial or storage facility.", "The site appears to store fuel or chemicals.",
              "Tank farms like this one usually lie near refineries."),
    "sports": ("This could be a recreational facility or a training ground.",
               "The area appears to serve sports and leisure.", "Such facilities are common in parks and schools."),
    "residential": ("The area appears to be a quiet residential district.", "This looks like a suburban neighbourhood.",
                    "Private pools and gardens are typical of such housing."),
    "river": ("The crossing links the two banks of the river.", "Traffic here depends on the river crossing.",
              "Bridges like this one carry roads over the water."),
    "junction": ("The junction organises the traffic of the area.", "This is likely a busy road intersection.",
                 "Roundabouts like this one keep traffic moving without signals."),
    "urban": ("The area appears to be a busy urban district.", "This could be a commercial area with heavy traffic.",
              "Roads and parking likely take up much of the ground here."),
    "scene": ("The scene is typical of aerial imagery.", "Nothing else stands out in the view.",
              "Little else stands out between the objects."),
}
_OPENINGS = ("The image is an aerial view of", "This aerial image shows", "The image offers a top-down view of",
             "Seen from above, the image shows")
_CONTAINS = ("It contains", "Visible {are}", "The scene includes")


def scene_kind(plan: PatchPlan, vocab: Vocabulary) -> str:
    """The kind of place a patch shows: that of the category whose objects cover most of it (ties: lower id)."""
    area: Counter[int] = Counter()
    for o in plan.objects:
        area[o.category_id] += o.area
    cat = min(area, key=lambda c: (-area[c], c))
    return SCENE_OF.get(vocab[cat].display, "scene")


def contents(plan: PatchPlan, vocab: Vocabulary, most: int = 4) -> str:
    """`14 small vehicles, two planes and one bridge`: the most frequent categories with agreeing counts."""
    counts = Counter(o.category_id for o in plan.objects)
    ranked = sorted(counts, key=lambda c: (-counts[c], c))
    parts = [counted(counts[c], vocab[c].display, vocab[c].plural) for c in ranked[:most]]
    rest = sum(counts[c] for c in ranked[most:])
    if rest:
        parts.append(counted(rest, "other object", "other objects"))
    return listing(parts)


def border_sentence(plan: PatchPlan) -> str:
    """How many objects the patch border cuts, in words that agree with the counts."""
    n, cut = len(plan.objects), sum(o.truncated for o in plan.objects)
    if n == 1:
        return "It is cut by the image border." if cut else "It lies wholly inside the image."
    if cut == 0:
        return "No object is cut by the image border."
    if cut == n:
        return f"{'Both' if n == 2 else 'All ' + number(n)} objects are cut by the image border."
    return f"{capital(number(cut))} of the {number(n)} objects {verb(cut, 'is', 'are')} cut by the image border."


def largest_sentence(plan: PatchPlan) -> str:
    """The largest object and where it is; its share of the patch rather than a size word (the largest object
    of a sparse patch may still be `small` on the patch scale, which reads wrong)."""
    o = max(plan.objects, key=lambda o: (o.area, -o.object_id))
    share = f", covering {percent(o.area_fraction)} of the image" if o.area_fraction >= 0.01 else ""
    if len(plan.objects) == 1:
        return f"It sits at the {o.position}, covering {percent(o.area_fraction)} of the image."
    return f"The largest object is {a(o.category)} at the {o.position}{share}."


_HALVES = {"top": ("top", "bottom"), "bottom": ("bottom", "top"), "left": ("left", "right"), "right": ("right", "left")}


def layout_sentence(plan: PatchPlan) -> str:
    """Where the patch's objects lie (a half of the image, or all over it) and how much of it they cover."""
    n, w, h = len(plan.objects), plan.width, plan.height
    share = {"top": sum(o.centroid[1] < h / 2 for o in plan.objects), "left": sum(o.centroid[0] < w / 2 for o in plan.objects)}
    share["bottom"], share["right"] = n - share["top"], n - share["left"]
    side = min(share, key=lambda k: (-share[k], k))
    cover = sum(o.area for o in plan.objects) / (w * h)
    together = f"Together they cover {percent(cover)} of the image."
    if n >= 3 and share[side] >= 0.75 * n:
        here, there = _HALVES[side]
        return f"Most objects lie in the {here} half of the image, while the {there} half is largely open. {together}"
    if n >= 3:
        return f"The objects are spread over the image. {together}"
    return together if n > 1 else ""


def holistic_parts(plan: PatchPlan, vocab: Vocabulary, most: int = 4) -> list[str]:
    """The template's four short sentences: the kind of place, what it contains, its largest object, its border.

    `plan` must have at least one object (planning drops empty patches). Wording varies with the patch id."""
    key, kind = plan.patch_id, scene_kind(plan, vocab)
    return [
        f"{pick(_OPENINGS, key, 'open')} {pick(_SCENE_WORDS[kind], key, 'scene')}.",
        f"{pick(_CONTAINS, key, 'contains').format(are=verb(len(plan.objects), 'is', 'are'))} {contents(plan, vocab, most)}.",
        largest_sentence(plan),
        border_sentence(plan),
    ]


def holistic_sentences(plan: PatchPlan, vocab: Vocabulary) -> str:
    """The holistic tier text: `holistic_parts` joined (the paper asks for four short sentences)."""
    return " ".join(holistic_parts(plan, vocab))


def closing_remark(plan: PatchPlan, vocab: Vocabulary, sentences: int = 1) -> str:
    """A caption's closing remark: what the place is likely used for (GeoPixelD's captions end on such a remark),
    in one or two sentences picked by the patch id."""
    remarks = _REMARKS[scene_kind(plan, vocab)]
    first = remarks.index(pick(remarks, plan.patch_id, "remark"))
    return " ".join(remarks[(first + k) % len(remarks)] for k in range(min(sentences, len(remarks))))
