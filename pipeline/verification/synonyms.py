"""The names annotators and vision-language models give iSAID's 15 categories, and the lexicon built from them.

A drafted sentence rarely says "small vehicle": it says car, sedan, van or SUV. The checks compare what a sentence
names against the plan, so every way of naming a category must map back to it. A name listed under several
categories (court, vehicle, aircraft, field) is ambiguous: it agrees with any of them and contradicts the rest.
A *weak* name (field, track, pitch, port, stadium, diamond) also has an everyday meaning ("green fields", "a railway
track"), so it may be a sentence's subject but never, on its own, asserts that the patch holds such an object.

Keys are the vocabulary's display words (`Category.display`); `VerifySettings` adds to or replaces any list, so a
custom vocabulary brings its own names. Plurals are derived (`plural`), so lists hold singular forms only.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

DEFAULT_SYNONYMS: dict[str, tuple[str, ...]] = {
    "plane": ("plane", "airplane", "aeroplane", "airliner", "jet", "jetliner", "jumbo jet", "passenger jet",
              "passenger plane", "passenger aircraft", "commercial aircraft", "cargo plane", "cargo aircraft",
              "fighter jet", "private jet", "business jet", "light aircraft", "propeller plane", "turboprop",
              "seaplane", "aircraft", "airbus", "boeing"),
    "helicopter": ("helicopter", "chopper", "rotorcraft", "aircraft"),
    "ship": ("ship", "boat", "vessel", "yacht", "sailboat", "sailing boat", "speedboat", "speed boat", "motorboat",
             "motor boat", "ferry", "barge", "tugboat", "tug boat", "tug", "tanker", "cargo ship", "container ship",
             "cruise ship", "fishing boat", "catamaran", "dinghy", "canoe", "kayak", "watercraft", "trawler",
             "freighter", "houseboat", "warship", "pleasure boat"),
    "storage tank": ("storage tank", "oil tank", "fuel tank", "water tank", "gas tank", "petroleum tank",
                     "cylindrical tank", "tank", "silo", "cistern", "holding tank", "storage silo"),
    "baseball diamond": ("baseball diamond", "baseball field", "baseball pitch", "baseball ground", "baseball park",
                         "ballpark", "ball park", "softball field", "softball diamond", "baseball infield",
                         "diamond", "stadium", "sports field", "field", "ball field"),
    "tennis court": ("tennis court", "court", "sports court", "sport court", "clay court", "playing court"),
    "basketball court": ("basketball court", "court", "sports court", "sport court", "playing court"),
    "ground track field": ("ground track field", "running track", "athletics track", "athletic track",
                           "track and field", "track field", "athletics field", "athletic field", "race track",
                           "racetrack", "racing track", "oval track", "athletics stadium", "running oval", "track",
                           "stadium", "sports field", "field"),
    "bridge": ("bridge", "overpass", "flyover", "viaduct", "footbridge", "pedestrian bridge", "road bridge"),
    "large vehicle": ("large vehicle", "truck", "lorry", "bus", "coach", "trailer", "semi-trailer", "semitrailer",
                      "semi truck", "semi", "tractor-trailer", "tractor trailer", "big rig", "container truck",
                      "dump truck", "cargo truck", "delivery truck", "box truck", "fire truck", "tanker truck",
                      "articulated lorry", "heavy vehicle", "heavy truck", "motorhome", "camper", "tanker",
                      "vehicle", "motor vehicle", "pickup truck", "pickup"),
    "small vehicle": ("small vehicle", "car", "sedan", "saloon", "van", "minivan", "suv", "hatchback", "jeep", "taxi",
                      "automobile", "coupe", "convertible", "passenger car", "compact car", "estate car", "vehicle",
                      "motor vehicle", "pickup truck", "pickup"),
    "swimming pool": ("swimming pool", "pool", "lap pool", "outdoor pool", "plunge pool", "lido"),
    "roundabout": ("roundabout", "traffic circle", "rotary", "traffic roundabout", "circular intersection",
                   "circular junction"),
    "soccer ball field": ("soccer ball field", "soccer field", "soccer pitch", "football field", "football pitch",
                          "football ground", "soccer ground", "soccer stadium", "football stadium", "pitch",
                          "stadium", "sports field", "field"),
    "harbor": ("harbor", "harbour", "port", "seaport", "pier", "dock", "jetty", "marina", "wharf", "quay",
               "quayside", "boat dock", "docking area", "harbor area", "harbour area", "landing pier"),
}

# names that also mean something else: they may be a subject, never on their own an assertion of presence
DEFAULT_WEAK = ("field", "sports field", "ball field", "track", "pitch", "port", "stadium", "diamond", "semi",
                "tug", "coach", "rotary", "camper", "pickup")

# category -> categories its presence makes mentionable: a running track usually encloses a football pitch
DEFAULT_IMPLIED: dict[str, tuple[str, ...]] = {"ground track field": ("soccer ball field",)}

# word groups that contain a category name but name none: blanked out before names are matched
EXCLUSIONS = (
    r"car[\s-]?parks?", r"car[\s-]?wash(?:es)?", r"bus[\s-]+(?:stops?|shelters?|lanes?|bays?)", r"boat[\s-]+(?:ramps?|launch(?:es)?|houses?)",
    r"tank[\s-]+farms?", r"pool[\s-]+(?:houses?|decks?|areas?)", r"food[\s-]+courts?", r"court[\s-]+yards?",
    r"(?:railway|railroad|rail|train|tram|dirt|tire|tyre|bike|cycle|jogging)[\s-]+tracks?",
    r"(?:jet|boarding|air|passenger[\s-]+boarding)[\s-]+bridges?", r"field[\s-]+of[\s-]+view",
    r"(?:agricultural|farm|crop|grass|rice|paddy|open|green|empty|vacant|barren|bare)[\s-]+fields?",
    r"fields?[\s-]+of[\s-]+(?:crops?|grass|wheat|corn)", r"(?:pitch|jet)[\s-]*(?:black|dark)",
    r"diamond[\s-]+shaped", r"diamond[\s-]+patterns?",
    r"parking[\s-]+(?:lots?|areas?|spaces?|garages?)",
)


def plural(name: str) -> str:
    """The plural of a (possibly multi-word) name: its last word inflected by the usual English rules."""
    head, _, last = name.rpartition(" ")
    if last in ("aircraft", "rotorcraft", "watercraft"):
        word = last
    elif re.search(r"(?:s|x|z|ch|sh)$", last):
        word = last + "es"
    elif re.search(r"[^aeiou]y$", last):
        word = last[:-1] + "ies"
    else:
        word = last + "s"
    return f"{head} {word}" if head else word


@dataclass(frozen=True)
class Name:
    """A surface form: the categories it may stand for, its grammatical number, whether it asserts presence."""

    surface: str
    categories: frozenset[str]
    plural: bool | None  # None: the same in both numbers (aircraft)
    weak: bool


@dataclass(frozen=True, eq=False)  # compared and hashed by identity: built once per settings, a cache key
class Lexicon:
    """Every surface form of every category, and the one regular expression that finds them (longest first)."""

    names: dict[str, Name]  # surface form, words joined by single spaces -> what it names
    pattern: re.Pattern  # every form, longest first, words joined by spaces or hyphens
    exclusions: re.Pattern
    implied: dict[str, frozenset[str]]
    categories: frozenset[str]  # every category the lexicon names
    first_words: frozenset[str]  # the words a form can begin with

    def categories_named(self, word: str) -> frozenset[str]:
        """The categories a bare word or name stands for (empty when it names none)."""
        n = self.names.get(_key(word.lower()))
        return n.categories if n else frozenset()


def _key(surface: str) -> str:
    return re.sub(r"[\s-]+", " ", surface.strip())


def _form_regex(surface: str) -> str:
    return r"[\s-]+".join(re.escape(w) for w in surface.split())


@lru_cache(maxsize=32)
def build_lexicon(synonyms: tuple[tuple[str, tuple[str, ...]], ...], weak: tuple[str, ...],
                  implied: tuple[tuple[str, tuple[str, ...]], ...]) -> Lexicon:
    """The lexicon of a synonym table (category -> names), weak names and implied categories; cached by value."""
    cats: dict[str, set[str]] = {}
    for category, names in synonyms:
        for n in (category, *names):
            cats.setdefault(_key(n.lower()), set()).add(category)
    weak_set = {_key(w.lower()) for w in weak}
    forms: dict[str, Name] = {}
    for surface, categories in cats.items():
        many = plural(surface)
        same = many == surface
        forms[surface] = Name(surface, frozenset(categories), None if same else False, surface in weak_set)
        if not same:
            forms.setdefault(many, Name(many, frozenset(categories), True, surface in weak_set))
    alternation = "|".join(_form_regex(f) for f in sorted(forms, key=len, reverse=True))
    pattern = re.compile(rf"(?<!\w)(?:{alternation})(?!\w)")
    exclusions = re.compile(r"\b(?:" + "|".join(EXCLUSIONS) + r")\b")
    return Lexicon(forms, pattern, exclusions, {k: frozenset(v) for k, v in implied},
                   frozenset(c for n in forms.values() for c in n.categories),
                   frozenset(f.split()[0] for f in forms))
