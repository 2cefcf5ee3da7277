# captioner — common jobs. `make demo` and `make test` are the README's first two commands.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
DATA   ?= $(or $(CAPTIONER_DATA),../shared/data)
# the offline jobs read the data folder from CAPTIONER_DATA: `make train DATA=/mnt/data` moves it
export CAPTIONER_DATA := $(abspath $(DATA))
EXTRAS ?= test,train,ray
# and their work folder from CAPTIONER_WORK (features, runs, bench videos): `make train WORK=/mnt/work` moves it
WORK   ?= $(or $(CAPTIONER_WORK),.cache)
export CAPTIONER_WORK := $(abspath $(WORK))

.PHONY: install demo test train eval bench fuzz clean help

help:
	@echo "make install  create .venv and install captioner (editable) with test/train/ray extras"
	@echo "make demo     caption a real sample video (Big Buck Bunny) and print the subtitles"
	@echo "make test     run the test suite"
	@echo "make train    prepare data, extract features, train detectors and the shipped decoder into weights/ (hours on 2 cores; weights/README.md)"
	@echo "make eval     score weights/ on Flickr8k test, coco-val2017-mini and the MSVD clips"
	@echo "make bench    speed and memory benchmark"
	@echo "make fuzz     200 mutated real clips through batch --workers 2: no crash, hang, partial file or unnamed failure"
	@echo "make clean    remove the demo and bench videos and pytest's cache"

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(VENV)/bin/pip || { rm -rf $(VENV) && $(PYTHON) -m venv $(VENV); }  # a venv left without pip (no python3-venv) is made again
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[$(EXTRAS)]'
	touch $@

demo: install
	$(PY) -m pipelines.demo

test: install
	$(PY) -m pytest

# stage 1: Flickr8k + caption-only text (ImageNet concepts); stage 2: MSR-VTT frames, CC3M photos and
# concept detectors learnt from captions (needs the two git mirrors named in ../shared/data/README.md), style tokens and
# three more epochs at a low rate (epoch 3 exported, model card tenth update);
# then the person presence head, the visual vectors `captioner search` ranks by (with their caption memory and the word
# vectors that choose among a video segment's beam captions), the words allowed after is/are and the training
# videos' captions for consensus candidates, and the training photos' (pipelines.train_scst, stage 3, is an experiment: not shipped)
train: install
	$(PY) -m pipelines.extract_features --set flickr8k --set coco
	$(PY) -m pipelines.train --run $(WORK)/runs/concepts --epochs 6
	$(PY) -m pipelines.train --resume $(WORK)/runs/concepts/best.pt --run $(WORK)/runs/concepts-lr2 --epochs 8 --lr 2e-4 --out $(WORK)/models/stage1
	$(PY) -m pipelines.prepare_data
	$(PY) -m pipelines.extract_features --set msrvtt --set cc3m
	$(PY) -m pipelines.train_detectors
	$(PY) -m pipelines.train_video --init $(WORK)/models/stage1 --run $(WORK)/runs/video --overwrite --no-styles --out weights
	$(PY) -m pipelines.train_video --init weights --shipped-detectors --run $(WORK)/runs/style --overwrite --epochs 5 --lr 1.5e-4 --msrvtt-caps 6 --out weights
	$(PY) -m pipelines.train_video --init weights --shipped-detectors --run $(WORK)/runs/swa --overwrite --epochs 3 --lr 7.5e-5 --msrvtt-caps 6 --keep-epochs
	$(PY) -m pipelines.train_video --init weights --shipped-detectors --run $(WORK)/runs/swa --epochs 3 --lr 7.5e-5 --msrvtt-caps 6 --export-only --average 3 --out weights
	$(PY) -m pipelines.train_presence --model weights --out weights
	$(PY) -m pipelines.train_vse --init weights --run $(WORK)/runs/vse --ensemble 3 --out weights
	$(PY) -m pipelines.vse_memory --model weights
	$(PY) -m pipelines.caption_vectors --model weights
	$(PY) -m pipelines.grammar --model weights
	$(PY) -m pipelines.caption_bank --model weights
	$(PY) -m pipelines.caption_bank --model weights --photos

eval: install
	@command -v java >/dev/null || { echo "METEOR needs Java: installing default-jre-headless"; apt-get install -y -q default-jre-headless || { echo "install a Java runtime (e.g. apt-get install default-jre-headless) and rerun"; exit 1; }; }
	$(PY) -m pipelines.extract_features --set flickr8k --set coco
	$(PY) -m pipelines.evaluate --model weights --update-card

bench: install
	$(PY) -m pipelines.bench

fuzz: install
	$(PY) -m pipelines.fuzz --count 200

clean:
	rm -rf $(WORK)/demo $(WORK)/bench .pytest_cache
