"""Map the encoder's 1,000 ImageNet classes to plain caption words (offline job).

The frozen encoder also yields ImageNet-1k class probabilities. Class names such as
"tabby, tabby cat", "Staffordshire bullterrier" or "entertainment center" are not
what a caption says, so each class gets one plain caption noun ("cat", "dog",
"cabinet") and a coarse group. The result is ``captioner/data/imagenet_words.tsv``
(``index  imagenet_name  word  group``, a header line, 1,000 rows in encoder output
order), read at run time by :mod:`captioner.concepts`, which needs no WordNet.

    python -m pipelines.concept_words            # regenerate the TSV
    python -m pipelines.concept_words --show     # also print every row and how it was derived

Needs nltk, the WordNet 3.0 database of Debian's ``wordnet-base``
(``/usr/share/wordnet``, or ``$WORDNET_DIR``), torchvision's class names and the
caption corpora under ``$CAPTIONER_DATA`` (``../shared/data``). Nothing else goes
in, so the same inputs give the same file byte for byte.

The rule, in order:

1. **Synset.** torchvision's names (``IMAGENET1K_V1.meta["categories"]``) carry no
   WordNet ids, but ImageNet-1k's class order is its wnids sorted, i.e. WordNet 3.0
   noun offsets in increasing order. Each class's candidates are the noun senses of
   its name (or of its longest sub-phrase that has some, for the renamed duplicates
   "crane bird" and "maillot tank suit"); the chosen synsets form the heaviest
   strictly increasing chain of offsets, preferring a synset whose first lemma is
   the name, then the more frequent sense. That alone puts 0-397 under animals,
   then artifacts, foods, formations, people and plants, and leaves ~100 classes
   a choice between senses of one name; ``SENSES`` settles the 49 where the
   preference is not ImageNet's choice (checked against the published wnids).
2. **Head noun.** A multi-word name whose last word names one of the synset's
   hypernyms is a kind of that thing ("brown bear" -> bear, "street sign" -> sign,
   "school bus" -> bus): that word, if seen ``MIN_OWN`` times. "sea lion", "guinea
   pig", "teddy bear" keep their names (no lion, pig or bear above them).
3. **Own words, then the frequency walk.** Caption frequency (Flickr8k, COCO
   val2017, MSVD, never a caption of a picture or clip we test on; plurals counted
   with the singular) decides what a person says:
   the synset's most frequent lemma if seen ``MIN_OWN`` times (the name itself
   while it is at least a third as frequent as the best synonym), else the
   nearest hypernym (breadth-first) with a lemma seen ``MIN_HYPERNYM`` times,
   else the name itself. Counts cannot tell senses apart, so a synonym or
   hypernym lemma counts only where the synset is one of that word's first two
   WordNet senses (a bassoon is no "wood", a theater no "house"). The walk never
   enters ``STOP``: words true of almost anything ("artifact", "device",
   "vehicle", "instrument", "food").
4. **Basic level.** Under an anchor of ``BASIC_LEVEL`` the anchor's word wins
   unless the name or the word found is a basic word in its own right: every dog
   breed says "dog", every bird "bird" but "owl", "duck", "penguin"... A caption
   names the basic level, and ImageNet's fine-grained guesses are the unreliable
   part of its output.
5. **Overrides.** ``OVERRIDES``: what a reader of all 1,000 ``--show`` rows still
   found wrong, each with its reason (mostly a sense the counts cannot see:
   "plane" the tool, "ear" of corn; or pictures that show something else).

Groups: person, animal, vehicle, food, plant, furniture, clothing, place, object
(``GROUPS``: first anchor found in the hypernym closure, else the lexicographer
file, else object; then one group per word, the majority of its classes, except
the ``HOMONYMS`` crane and cap). They say which caption nouns a concept word may
stand in for (``captioner.concepts.NOUN_GROUPS``): "dog" may replace "animal",
never "man".
"""

from __future__ import annotations

import argparse
import atexit
import os
import shutil
import tempfile
import warnings
from collections import Counter
from pathlib import Path

from captioner.concepts import GROUPS as GROUP_NAMES

from .common import DATA, ROOT, flickr_split, read_tsv, text_sentences

OUT = ROOT / "captioner" / "data" / "imagenet_words.tsv"
WORDNET_DIR = Path(os.environ.get("WORDNET_DIR", "/usr/share/wordnet"))
HEADER = ("index", "imagenet_name", "word", "group")
#: the caption files ``corpus_captions`` reads
CORPUS_FILES = (DATA / "flickr8k" / "captions.tsv", DATA / "text" / "coco_val2017_captions.tsv",
                DATA / "text" / "msvd_captions.tsv")


def corpus_captions() -> list[str]:
    """The captions whose word counts decide what a person says: Flickr8k's train and dev
    photos, and the COCO and MSVD text less everything we test on (``text_sentences``).
    The counts choose the shipped words, so no test caption may move them."""
    test = set(flickr_split("test"))
    out = [c for f, c in read_tsv(CORPUS_FILES[0]) if f not in test]
    return out + [c for _, c in text_sentences(("coco", "msvd"))]

MIN_OWN = 5  # the class's own name is a caption word if seen this often
MIN_HYPERNYM = 20  # a hypernym's word must be really common to replace it

# Synsets the hypernym walk never enters: true of almost anything, they tell a
# caption nothing ("an artifact", "a device", "some food").
STOP = frozenset(
    """
    entity.n.01 physical_entity.n.01 abstraction.n.06 object.n.01 whole.n.02 thing.n.12
    living_thing.n.01 organism.n.01 causal_agent.n.01 matter.n.03 substance.n.01 substance.n.07
    solid.n.01 part.n.02 part.n.03 relation.n.01 unit.n.05
    artifact.n.01 instrumentality.n.03 device.n.01 structure.n.01 covering.n.02
    commodity.n.01 consumer_goods.n.01 container.n.01 equipment.n.01 implement.n.01
    material.n.01 creation.n.02 product.n.02 system.n.01 article.n.02 decoration.n.01
    protective_covering.n.01 mechanism.n.05 mechanical_device.n.01 surface.n.01 way.n.06
    food.n.01 food.n.02 nutriment.n.01 foodstuff.n.02 ingredient.n.03 produce.n.01 beverage.n.01
    geological_formation.n.01 natural_object.n.01 vascular_plant.n.01 plant.n.02 plant_part.n.01
    vertebrate.n.01 chordate.n.01 invertebrate.n.01 mammal.n.01 placental.n.01 animal.n.01
    person.n.01
    vehicle.n.01 conveyance.n.03 craft.n.02 furniture.n.01 furnishing.n.02 machine.n.01
    instrument.n.01 measuring_instrument.n.01 musical_instrument.n.01 appliance.n.01 appliance.n.02
    home_appliance.n.01 utensil.n.01 clothing.n.01
    """.split()
)

# Basic-level categories (Rosch): under one of these anchors a caption names the
# anchor ("a dog", "a bird"), not the ImageNet species, unless the class's name, its
# head noun or the word found so far is one of the listed words that people do use
# ("an owl", "a penguin"). The nearest anchor above the class applies.
# anchor synset -> (its caption word, kinds that are basic words themselves)
BASIC_LEVEL = {
    "dog.n.01": ("dog", ()),
    "wild_dog.n.01": ("dog", ()),
    "domestic_cat.n.01": ("cat", ()),
    "bird.n.01": ("bird", ("owl", "duck", "goose", "chicken", "hen", "rooster", "parrot", "penguin", "eagle",
                           "flamingo", "pelican", "swan", "peacock", "ostrich", "vulture", "hummingbird",
                           "stork", "heron", "crane", "toucan")),
    "fish.n.01": ("fish", ("shark", "goldfish", "eel", "ray", "stingray", "salmon")),
    "snake.n.01": ("snake", ()),
    "lizard.n.01": ("lizard", ("iguana", "chameleon", "gecko")),
    "salamander.n.01": ("salamander", ()),
    "dinosaur.n.01": ("dinosaur", ()),
    "spider.n.01": ("spider", ()),
    "butterfly.n.01": ("butterfly", ()),
    "beetle.n.01": ("beetle", ("ladybug",)),
    "insect.n.01": ("insect", ("bee", "ant", "fly", "grasshopper", "cricket", "cockroach", "dragonfly", "mosquito")),
    "monkey.n.01": ("monkey", ()),
    "ape.n.01": ("monkey", ("gorilla", "chimpanzee", "orangutan")),
    "cattle.n.01": ("cow", ()),
    "sheep.n.01": ("sheep", ()),
    "wild_sheep.n.01": ("sheep", ()),
    "antelope.n.01": ("antelope", ("gazelle",)),
    "leporid.n.01": ("rabbit", ()),
    "fungus.n.01": ("mushroom", ()),
    "car.n.01": ("car", ("taxi", "cab", "jeep", "limousine", "ambulance", "minivan", "convertible")),
    "truck.n.01": ("truck", ()),
    "bus.n.01": ("bus", ()),
    "locomotive.n.01": ("train", ()),
    "aircraft.n.01": ("airplane", ("airship", "blimp", "balloon", "helicopter", "glider")),
    "boat.n.01": ("boat", ("canoe", "kayak", "sailboat", "gondola")),
    "ship.n.01": ("ship", ("submarine", "wreck")),
    "body_armor.n.01": ("armor", ("vest",)),
}

# Coarse groups: (group, anchor synsets), tried in this order along the hypernym
# closure; a class under none of them gets its lexicographer file's group below.
GROUPS = (
    ("person", ("person.n.01",)),
    ("animal", ("animal.n.01",)),
    ("vehicle", ("vehicle.n.01", "craft.n.02", "public_transport.n.01")),
    ("food", ("food.n.01", "food.n.02", "edible_fruit.n.01", "vegetable.n.01")),
    ("plant", ("plant.n.02", "fungus.n.01", "plant_part.n.01")),
    ("furniture", ("furniture.n.01", "furnishing.n.02")),
    ("clothing", ("clothing.n.01", "garment.n.01", "footwear.n.02", "headdress.n.01", "accessory.n.01",
                  "mask.n.04", "armor.n.01", "spectacles.n.01")),
    ("place", ("building.n.01", "geological_formation.n.01", "shop.n.01", "place_of_worship.n.01",
               "area.n.05", "bridge.n.01", "housing.n.01", "landing.n.02", "dam.n.01", "breakwater.n.01",
               "establishment.n.04", "facility.n.01", "shore.n.01", "fortification.n.01", "tower.n.01",
               "memorial.n.03")),
)
HOMONYMS = ("crane", "cap")  # words naming different things in different groups: each keeps its own

LEXNAME_GROUPS = {"noun.person": "person", "noun.animal": "animal", "noun.food": "food", "noun.plant": "plant"}

# index -> (word, group or None to keep the rule's, reason): what was still wrong
# after reading all 1,000 rows of ``--show``. Mostly a misleading word sense the
# counts cannot see ("plane" the tool, "ear" of corn), ImageNet pictures that show
# something else than the synset says, or a plural-only noun.
OVERRIDES: dict[int, tuple[str, str | None, str]] = {
    7: ("rooster", None, "'cock' is not caption language; the images are roosters"),
    69: ("fossil", "object", "the trilobite images are fossils"),
    70: ("spider", None, "a harvestman (daddy longlegs) is called a spider"),
    101: ("elephant", None, "a tusker is an elephant; WordNet files it directly under mammal"),
    109: ("coral", None, "'brain coral' is not caption language"),
    110: ("worm", None, "a flatworm is a worm to anyone but a zoologist"),
    111: ("worm", None, "a nematode is a worm to anyone but a zoologist"),
    112: ("shell", None, "the conch images are mostly the shell"),
    116: ("shell", None, "a chiton shows as a plated shell on a rock"),
    117: ("shell", None, "the chambered nautilus images are mostly the shell"),
    125: ("crab", None, "a hermit crab is called a crab (WordNet keeps it out of the true crabs)"),
    126: ("bug", None, "woodlice and pill bugs; 'isopod' is not caption language"),
    147: ("whale", None, "a grey whale is a whale in a caption (the count of 'whale', 4, is one short of MIN_OWN)"),
    148: ("whale", None, "people call a killer whale a whale (or an orca), not a dolphin"),
    334: ("porcupine", None, "its synonym 'hedgehog' (frequent in MSVD) is another animal"),
    387: ("red panda", None, "'panda' alone means the giant panda"),
    408: ("vehicle", None, "'amphibian' alone reads as the animal"),
    410: ("beehive", "object", "the apiary images are rows of beehives"),
    442: ("tower", None, "a bell cote is a small bell tower"),
    458: ("plaque", "object", "ImageNet's brass is the memorial plaque (brass.n.07)"),
    486: ("cello", None, "the walk stops at 'string' (bowed stringed instrument), read as twine"),
    493: ("dresser", None, "a chiffonier is a chest of drawers; 'commode' reads as a toilet"),
    544: ("pot", None, "the Dutch oven images are cast-iron pots, not ovens"),
    548: ("cabinet", None, "an entertainment center is a TV cabinet; not 'television' unless it is one"),
    552: ("feather boa", None, "'boa' alone names a snake"),
    553: ("cabinet", None, "ImageNet's file is a filing cabinet; 'file' reads as a document or a tool"),
    557: ("flag", None, "the flagpole images show flags; the walk gives 'stick'"),
    565: ("train", None, "a freight car is a railway car; 'car' reads as an automobile"),
    705: ("train", None, "a passenger car is a railway coach; 'car' reads as an automobile"),
    570: ("gas mask", None, "spelling of ImageNet's 'gasmask'"),
    575: ("golf cart", None, "spelling of ImageNet's 'golfcart'"),
    581: ("car", "vehicle", "ImageNet's grille is a radiator grille; the images show car fronts"),
    592: ("hard drive", None, "the head noun 'disc' reads as a frisbee or a record"),
    598: ("television", "object", "the home theater images show a television and speakers"),
    607: ("pumpkin", None, "a jack-o'-lantern is a carved pumpkin; 'lantern' misleads"),
    608: ("jeans", None, "plural-only noun"),
    610: ("shirt", None, "ImageNet's jersey is a T-shirt"),
    633: ("magnifying glass", None, "the everyday word for a loupe"),
    634: ("sawmill", None, "the walk's 'plant' reads as vegetation"),
    638: ("bathing suit", "clothing", "ImageNet's maillot images are one-piece swimsuits, like 639"),
    649: ("stone", None, "a megalith is a standing stone; 'megalith' is not caption language"),
    655: ("skirt", None, "'mini' alone is ambiguous (car, size)"),
    680: ("bottle", None, "ImageNet's nipple is a baby-bottle teat; the images show baby bottles"),
    681: ("laptop", None, "ImageNet's notebook is a notebook computer"),
    685: ("speedometer", None, "the odometer images show car dashboards; the walk gives 'meter'"),
    697: ("pajamas", None, "plural-only noun"),
    723: ("pinwheel", None, "the walk's 'wheel' misleads for the toy"),
    726: ("tool", None, "ImageNet's plane is a carpenter's plane; 'plane' reads as an airplane"),
    756: ("barrel", None, "the walk's 'pool' misleads for a rain barrel"),
    769: ("ruler", None, "ImageNet's rule is a ruler"),
    785: ("seat belt", "object", "the head noun 'belt' reads as clothing"),
    789: ("door", None, "a shoji is a paper sliding door; the walk gives 'cover'"),
    798: ("ruler", None, "a slide rule looks like a ruler; the walk gives 'computer'"),
    800: ("slot machine", None, "ImageNet's slot is the one-armed bandit"),
    810: ("keyboard", None, "the space bar is a key of a keyboard"),
    836: ("sunglasses", "clothing", "ImageNet's sunglass (a burning lens) is pictured as sunglasses, worn"),
    850: ("teddy bear", None, "'teddy' alone is ambiguous"),
    861: ("toilet", None, "the toilet seat images show toilets"),
    881: ("piano", None, "ImageNet's upright is an upright piano"),
    896: ("sink", None, "a washbasin is what a caption calls a sink (sink.n.01 is a sibling synset: the counts never reach it)"),
    900: ("tower", None, "a water tower; the walk gives 'tank'"),
    915: ("tent", None, "a yurt is a round tent; the walk gives 'home'"),
    916: ("website", None, "the web site images are screenshots; the walk gives 'computer'"),
    921: ("book", None, "a book jacket; 'jacket' reads as clothing"),
    922: ("menu", "object", "the menu images are printed menus, not food"),
    923: ("plate", "object", "as a caption word a plate is the dish, not the course on it"),
    924: ("guacamole", None, "the walk's 'seasoning' misleads"),
    926: ("stew", None, "a hot pot is a stew; the walk gives 'dish' (read as a plate)"),
    929: ("popsicle", None, "an ice lolly; 'lollipop' is another sweet"),
    932: ("pretzel", None, "the walk's 'cracker' misleads"),
    958: ("hay", "plant", "hay is dried grass; WordNet files it as fodder (food)"),
    959: ("pasta", None, "carbonara is a pasta dish; the walk gives 'sauce'"),
    962: ("meatloaf", None, "'loaf' reads as bread"),
    964: ("pie", None, "a potpie; the walk gives 'dish' (read as a plate)"),
    968: ("cup", "object", "ImageNet's cup is a punch, but the images and the word are cups"),
    976: ("cliff", None, "a promontory is a headland; 'promontory' is not caption language"),
    978: ("beach", None, "captions call a seashore a beach"),
    984: ("flower", None, "the rapeseed images are fields of yellow flowers; the walk gives 'seed'"),
    988: ("acorn", None, "the walk's 'fruit' misleads"),
    989: ("fruit", None, "a rose hip; 'hip' reads as the body part"),
    998: ("corn", None, "an ear of corn; 'ear' reads as the body part"),
    999: ("toilet paper", None, "the everyday word; the head noun gives 'tissue'"),
}

# WordNet 3.0's lexnames file (see lexnames(5WN)); nltk needs it, Debian does not ship it.
LEXNAMES = """adj.all adj.pert adv.all noun.Tops noun.act noun.animal noun.artifact noun.attribute
noun.body noun.cognition noun.communication noun.event noun.feeling noun.food noun.group
noun.location noun.motive noun.object noun.person noun.phenomenon noun.plant noun.possession
noun.process noun.quantity noun.relation noun.shape noun.state noun.substance noun.time verb.body
verb.change verb.cognition verb.communication verb.competition verb.consumption verb.contact
verb.creation verb.emotion verb.motion verb.perception verb.possession verb.social verb.stative
verb.weather adj.ppl""".split()


def open_wordnet(folder: Path = WORDNET_DIR):
    """nltk's WordNet reader over a plain WordNet 3.0 database folder.

    nltk (3.9+) only reads files under its data path and a root without symlinks
    out of it, wants a ``lexnames`` file and, unless told this *is* WordNet 3.0,
    looks for its own downloaded copy to map from. So the database is copied to a
    temporary folder (28 MB) with ``lexnames`` added, and the mapping is switched off.
    """
    import nltk
    from nltk.corpus.reader.wordnet import WordNetCorpusReader

    if not (folder / "data.noun").exists():
        raise FileNotFoundError(f"no WordNet database in {folder} (apt-get install wordnet-base, or set WORDNET_DIR)")

    class WordNet30(WordNetCorpusReader):
        def map_wn(self, version="wordnet"):  # the files are 3.0 already
            return None

    tmp = Path(tempfile.mkdtemp(prefix="wordnet-"))
    atexit.register(shutil.rmtree, tmp, True)
    for f in folder.iterdir():
        if f.is_file():
            shutil.copyfile(f, tmp / f.name)
    pos = {"adj": 3, "adv": 4, "noun": 1, "verb": 2}
    (tmp / "lexnames").write_text("".join(f"{i:02d}\t{n}\t{pos[n.split('.')[0]]}\n" for i, n in enumerate(LEXNAMES)))
    if str(tmp) not in nltk.data.path:
        nltk.data.path.insert(0, str(tmp))
    with warnings.catch_warnings():  # "multilingual functions not available": not used here
        warnings.simplefilter("ignore", UserWarning)
        wn = WordNet30(str(tmp), None)
    assert wn.get_version() == "3.0", wn.get_version()
    return wn


def imagenet_names() -> list[str]:
    from torchvision.models import EfficientNet_B0_Weights

    names = list(EfficientNet_B0_Weights.IMAGENET1K_V1.meta["categories"])
    assert len(names) == 1000
    return names


# ---------------------------------------------------------------- 1. synsets

# Where the offset chain leaves a choice between senses of one name, it takes the
# first lemma / most frequent sense, which is ImageNet's sense for about half of the
# ~100 such classes. These are the other half, read off ImageNet's published wnid
# list (LOC_synset_mapping.txt: e.g. 456 bow = n02879718, the weapon, not the knot).
# With them the chain reproduces every checked wnid; the test re-checks the file.
SENSES = {
    55: "green_snake.n.02", 102: "echidna.n.02", 277: "red_fox.n.03", 398: "abacus.n.02",
    406: "altar.n.02", 427: "barrel.n.02", 446: "binder.n.03", 450: "bobsled.n.02", 456: "bow.n.04",
    458: "brass.n.07", 468: "cab.n.03", 471: "cannon.n.02", 476: "carousel.n.02", 536: "dock.n.05",
    538: "dome.n.04", 587: "hammer.n.02", 600: "hook.n.04", 606: "iron.n.04", 624: "library.n.05",
    628: "liner.n.04", 636: "mailbag.n.02", 664: "monitor.n.05", 666: "mortar.n.03",
    667: "mortarboard.n.02", 693: "paddle.n.04", 697: "pajama.n.02", 698: "palace.n.04",
    718: "pier.n.03", 726: "plane.n.05", 738: "pot.n.04", 745: "projector.n.02", 753: "radiator.n.03",
    758: "reel.n.03", 780: "schooner.n.02", 782: "screen.n.03", 783: "screw.n.04", 787: "shield.n.02",
    800: "slot.n.07", 816: "spindle.n.04", 827: "stove.n.02", 830: "stretcher.n.03", 840: "swab.n.02",
    881: "upright.n.02", 884: "vault.n.03", 896: "washbasin.n.02", 897: "washer.n.03",
    902: "whistle.n.04", 910: "wooden_spoon.n.02", 987: "corn.n.02",
}


def _candidates(wn, name: str):
    """Noun senses of the name, else of its longest sub-phrase that has some."""
    words = name.split()
    for n in range(len(words), 0, -1):
        for a in range(len(words) - n + 1):
            phrase = "_".join(words[a : a + n])
            senses = wn.synsets(phrase, "n")
            if senses:
                first = phrase.lower()
                return [(s.offset(), (1000 if s.lemmas()[0].name().lower() == first else 0) + 100 - rank, s)
                        for rank, s in enumerate(senses)]
    return []


def resolve_synsets(wn, names: list[str]) -> list:
    """One synset per class: the heaviest chain of strictly increasing offsets (``SENSES`` fixed)."""
    cands = [_candidates(wn, n) for n in names]
    for i, name in SENSES.items():
        cands[i] = [(o, w, s) for o, w, s in cands[i] if s.name() == name]
        if not cands[i]:
            raise ValueError(f"SENSES[{i}] = {name} is not a sense of {names[i]!r}")
    offsets = sorted({o for c in cands for o, _, _ in c})
    rank = {o: i + 1 for i, o in enumerate(offsets)}
    size = len(offsets)
    tree: list[tuple[int, tuple | None]] = [(0, None)] * (size + 1)  # Fenwick tree of prefix maxima

    def best_below(i: int) -> tuple[int, tuple | None]:
        best = (0, None)
        while i > 0:
            best = max(best, tree[i], key=lambda t: t[0])
            i -= i & -i
        return best

    def raise_to(i: int, value: tuple[int, tuple]) -> None:
        while i <= size:
            if value[0] > tree[i][0]:
                tree[i] = value
            i += i & -i

    back: dict[tuple[int, int], tuple | None] = {}
    for ci, cand in enumerate(cands):
        updates = []
        for off, weight, _ in cand:
            score, prev = best_below(rank[off] - 1)
            back[(ci, off)] = prev
            updates.append((rank[off], (score + weight, (ci, off))))
        for r, v in updates:  # after the loop: one candidate per class
            raise_to(r, v)
    chosen: dict[int, int] = {}
    node = best_below(size)[1]
    while node is not None:
        chosen[node[0]] = node[1]
        node = back[node]
    missing = [names[i] for i in range(len(names)) if i not in chosen]
    if missing:
        raise RuntimeError(f"no consistent WordNet synset for {missing}")
    return [next(s for o, _, s in cands[i] if o == chosen[i]) for i in range(len(names))]


# ---------------------------------------------------------------- 2.-4. words

def phrase_of(lemma) -> str:
    """A lemma as caption words (the runtime's tokenizer): 'Granny_Smith' -> 'granny smith', "potter's wheel" kept."""
    from captioner.vocab import tokenize

    return " ".join(tokenize(lemma.name().replace("_", " ").replace("-", " ")))


def _plurals(phrase: str, irregular: dict[str, list[str]]) -> set[str]:
    """The phrase with its last word in singular and plural forms (regular rules + noun.exc)."""
    head, _, last = phrase.rpartition(" ")
    forms = {last, last + "s"}
    if last.endswith(("s", "x", "z", "ch", "sh", "o")):
        forms.add(last + "es")
    if last.endswith("y"):
        forms.add(last[:-1] + "ies")
    if last.endswith("f"):
        forms.add(last[:-1] + "ves")
    if last.endswith("fe"):
        forms.add(last[:-2] + "ves")
    forms.update(irregular.get(last, ()))
    return {(head + " " + f).strip() for f in forms}


def caption_counts(phrases: set[str]) -> Counter:
    """How often each phrase (or its plural) occurs as consecutive tokens in the corpora."""
    from captioner.vocab import tokenize

    irregular: dict[str, list[str]] = {}
    for line in open(WORDNET_DIR / "noun.exc", encoding="utf-8"):
        plural, singular = line.split()[:2]
        irregular.setdefault(singular, []).append(plural)
    variant_of: dict[str, set[str]] = {}
    for p in phrases:
        for v in _plurals(p, irregular):
            variant_of.setdefault(v, set()).add(p)
    longest = max(len(p.split()) for p in variant_of)
    counts: Counter = Counter()
    for caption in corpus_captions():
        toks = tokenize(caption)
        for n in range(1, longest + 1):
            for i in range(len(toks) - n + 1):
                gram = " ".join(toks[i : i + n])
                for p in variant_of.get(gram, ()):
                    counts[p] += 1
    return counts


def _ancestors(synset):
    """Hypernyms breadth-first (nearest first, ties by name), never entering STOP."""
    seen, frontier, out = {synset}, [synset], []
    while frontier:
        nxt = []
        for s in frontier:
            for h in sorted(s.hypernyms() + s.instance_hypernyms(), key=lambda x: x.name()):
                if h not in seen and h.name() not in STOP:
                    seen.add(h)
                    nxt.append(h)
        out.extend(nxt)
        frontier = nxt
    return out


def _closure(synset) -> set[str]:
    return {s.name() for s in synset.closure(lambda x: x.hypernyms() + x.instance_hypernyms())} | {synset.name()}


def _sense_ok(wn, lemma, synset, first: int = 2) -> bool:
    """Is ``synset`` among the lemma's ``first`` noun senses in WordNet?

    Corpus counts do not know senses: "wood" is common, but as the woodwind it is
    WordNet's 7th sense, and a bassoon is no "wood"; "house" (a theater),
    "hawk" (a mortarboard), "light" (a lighter) likewise. WordNet orders senses by
    frequency, so a count is trusted only for a word's first senses.
    """
    return synset in wn.synsets(lemma.name(), "n")[:first]


def _best_lemma(wn, synset, counts: Counter, minimum: int, prefer: str | None = None) -> str | None:
    """The synset's most frequent word (at most two tokens, in one of its main senses), if seen ``minimum`` times.

    ``prefer`` (the class's own name, or the head noun that led here) needs no sense
    check and wins while it is at least a third as frequent as the best alternative:
    "crib" (8) over "cot" (9), but "taxi" (25) over "cab" (12).
    """
    scored = [(counts[phrase_of(l)], phrase_of(l)) for l in synset.lemmas() if _sense_ok(wn, l, synset)]
    scored = [t for t in scored if t[0] >= minimum and 1 <= len(t[1].split()) <= 2 and t[1] != prefer]
    best = max(scored, key=lambda t: (t[0], -len(t[1]), t[1]), default=None)
    if prefer and counts[prefer] >= minimum and (best is None or 3 * counts[prefer] >= best[0]):
        return prefer
    return best[1] if best else None


def derive_word(wn, synset, counts: Counter) -> tuple[str, str]:
    """(word, how) for one class synset by rules 2-4."""
    name = phrase_of(synset.lemmas()[0])  # ImageNet's name for the class
    ancestors = _ancestors(synset)
    word, prefer, how = None, name, "own"
    # 2. head noun naming a hypernym: "brown bear" is a bear. The compound names the
    # sense, so one more sense is allowed ("dining table": table.n.03), not any
    # ("traffic light": light.n.14, so it stays "traffic light").
    words = name.split()
    if len(words) > 1:
        hit = next((a for a in ancestors
                    if any(phrase_of(l) == words[-1] and _sense_ok(wn, l, a, first=3) for l in a.lemmas())), None)
        if hit is not None:
            prefer, how = words[-1], f"head:{hit.name()}"
            word = _best_lemma(wn, hit, counts, MIN_OWN, prefer)
    # 3. the class's own words, then the nearest common hypernym
    if word is None:
        word = _best_lemma(wn, synset, counts, MIN_OWN, name)
    if word is None:
        for a in ancestors:
            word = _best_lemma(wn, a, counts, MIN_HYPERNYM)
            if word is not None:
                how += f" up:{a.name()}"
                break
    if word is None:  # nothing common enough: the class's own name (its head if longer than two words)
        word = name if len(words) <= 2 else words[-1]
        how += " rare"
    # 4. basic level: the nearest anchor above the class
    anchor = next((a for a in [synset, *_ancestors(synset)] if a.name() in BASIC_LEVEL), None)
    if anchor is not None:
        basic, keep = BASIC_LEVEL[anchor.name()]
        own = next((w for w in (name, prefer) if w in keep), None)
        new = own or (word if word in keep else basic)
        if new != word:
            word, how = new, how + f" basic:{anchor.name()}"
    return word, how


def derive_group(synset) -> str:
    """The first group whose anchor is the synset or above it, else by lexicographer file, else object."""
    closure = _closure(synset)
    for group, anchors in GROUPS:
        if any(a in closure for a in anchors):
            return group
    return LEXNAME_GROUPS.get(synset.lexname(), "object")


def build(show: bool = False) -> list[tuple[int, str, str, str]]:
    """The 1,000 rows (index, imagenet_name, word, group); ``show`` prints each with its derivation."""
    wn = open_wordnet()
    names = imagenet_names()
    for name in [*STOP, *BASIC_LEVEL, *(a for _, anchors in GROUPS for a in anchors)]:
        wn.synset(name)  # a typo in the tables fails loudly here
    synsets = resolve_synsets(wn, names)
    phrases = {phrase_of(l) for s in synsets for a in [s, *_ancestors(s)] for l in a.lemmas()}
    phrases.discard("")
    counts = caption_counts(phrases)
    rows = []
    for i, (name, s) in enumerate(zip(names, synsets)):
        word, how = derive_word(wn, s, counts)
        group = derive_group(s)
        if i in OVERRIDES:
            o_word, o_group, reason = OVERRIDES[i]
            how = f"OVERRIDE ({reason}) was {word}/{group}"
            word, group = o_word, o_group or group
        rows.append((i, name, word, group, f"{s.name()}\t{counts[word]}\t{how}"))
    rows = unify_groups(rows)
    if show:
        for row in rows:
            print("\t".join(map(str, row)))
    rows = [row[:4] for row in rows]
    check(rows)
    return rows


def unify_groups(rows: list[tuple]) -> list[tuple]:
    """One group per word: its classes' most common group (ties: the lowest index).

    WordNet files a mushroom as a plant or a food and a pickelhaube away from the
    other helmets; a word should mean one kind of thing. ``HOMONYMS`` are the
    exceptions, words for two different things (the crane bird and machine).
    """
    groups: dict[str, Counter] = {}
    for i, _, word, group, *_ in rows:
        groups.setdefault(word, Counter())[group] += 1
    first = {}
    for i, _, word, group, *_ in rows:
        first.setdefault((word, group), i)
    out = []
    for i, name, word, group, *rest in rows:
        if word not in HOMONYMS:
            group = min(groups[word], key=lambda g: (-groups[word][g], first[(word, g)]))
        out.append((i, name, word, group, *rest))
    return out


def check(rows) -> None:
    """Every row: a lower-case word of one or two tokens and a known group."""
    bad = [r for r in rows if not (r[2] and r[2] == r[2].lower() and 1 <= len(r[2].split()) <= 2
                                   and r[3] in GROUP_NAMES)]
    if [r[0] for r in rows] != list(range(1000)) or bad:
        raise ValueError(f"bad rows: {bad}")


def write(rows, path: Path = OUT) -> Path:
    """The TSV, header first, UTF-8, ``\\n`` line ends, written atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = "\t".join(HEADER) + "\n" + "".join("\t".join(map(str, r)) + "\n" for r in rows)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text, encoding="utf-8", newline="\n")
    tmp.replace(path)
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--show", action="store_true", help="print every row: index, name, word, group, synset, count, derivation")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    print(write(build(show=args.show), args.out))


if __name__ == "__main__":
    main()
