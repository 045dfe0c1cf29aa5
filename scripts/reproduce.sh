#!/usr/bin/env bash
# Reproduce the tables of RESULTS.md, resumably.
#
# Every step is one `headrank` command. A finished step leaves runs/done/<step> (its wall time) and is
# skipped on the next call; an interrupted evaluation resumes at the first unfinished query and an
# interrupted training at its last finished epoch, so the script can be stopped and restarted at will.
# Logs: runs/logs/<step>.log. Two CPU cores need many hours for everything: run one section at a time.
#
#   scripts/reproduce.sh smollm2     BM25, ICR, head sets, trained HeadRank, baselines (default model)
#   scripts/reproduce.sh qwen        the same rerankers on Qwen2.5-Coder-0.5B-Instruct
#   scripts/reproduce.sh reversed    both models, reversed input order (first-stage top next to the query),
#                                    then both orders averaged
#   scripts/reproduce.sh k50         both models, K = 50 on DL19 and DL20
#   scripts/reproduce.sh ablations   the training ablations (default model)
#   scripts/reproduce.sh default     the shipped default: its fusion and valve by the every-domain rule, its rows
#   scripts/reproduce.sh default-heads   the default's heads, chosen again from an all-head pool (RESULTS.md: its time)
#   scripts/reproduce.sh --list      print the steps of the named sections without running them
set -euo pipefail

HR=${HEADRANK:-.venv/bin/headrank}
ALL=dl19,dl20,noveleval,nfcorpus
QWEN=qwen2.5-coder-0.5b-instruct
LIST_ONLY=0

step() {  # step NAME headrank-args...
    local name=$1
    shift
    if [[ $LIST_ONLY == 1 ]]; then
        echo "$name: headrank $*"
        return
    fi
    if [[ -e runs/done/$name ]]; then
        echo "skip $name (done: $(cat "runs/done/$name"))"
        return
    fi
    echo "run  $name: headrank $*"
    local start=$SECONDS
    "$HR" "$@" >"runs/logs/$name.log" 2>&1 || { echo "FAILED $name (see runs/logs/$name.log)"; exit 1; }
    echo "$((SECONDS - start)) s" >"runs/done/$name"
}

# Training-free rerankers of one model from one shared full-depth capture per list, then the trained one.
rerankers() {  # rerankers NAME TAG MODEL DEPTH ORDER BENCHMARKS  (head sets and checkpoint: runs/*/NAME-dl21*)
    local name=$1 tag=$2 model=$3 depth=$4 order=$5 sets=$6
    local common=(-K "$depth" --order "$order" -b "$sets")
    step "$name-$tag-icr" evaluate --method icr --model "$model" --shared-capture "${common[@]}" --fuse-first-stage 0.5
    for set in dl21 dl21-qrhead; do
        step "$name-$tag-$set" evaluate --method heads --model "$model" --heads "runs/heads/$name-$set.json" \
            --shared-capture "${common[@]}" --fuse-first-stage 0.5
    done
    local ckpt=runs/ckpt/$name-dl21
    [[ $LIST_ONLY == 1 ]] || ckpt=$(best_on_validation runs/ckpt/"$name"-dl21*/)
    if [[ $LIST_ONLY == 0 ]] && untrained_best "$ckpt"; then
        echo "skip $name-$tag-trained: no epoch beat the untrained head set on validation, so the checkpoint" \
            "holds the zero adapter and its rows are the $name-$tag-dl21 rows"
        return
    fi
    local recipe
    recipe=$(basename "$ckpt")
    step "$name-$tag-trained${recipe#"$name"-dl21}" evaluate --method heads --model "$ckpt" "${common[@]}" \
        --fuse-first-stage 0.5
}

best_on_validation() {  # best_on_validation CHECKPOINT...: the training recipe with the best DL21 validation nDCG@10
    python3 -c 'import json, os, sys
best = lambda p: max(r["val_ndcg@10"] for r in json.load(open(p + "/headrank_config.json"))["history"])
done = [p for p in sys.argv[1:] if os.path.isfile(p + "/headrank_config.json")]
print(max(done, key=best).rstrip("/"))' "$@"
}

untrained_best() {  # untrained_best CHECKPOINT: did validation keep epoch 0 (the zero adapter)?
    python3 -c 'import json, sys; h = json.load(open(sys.argv[1] + "/headrank_config.json"))["history"]
sys.exit(max(h, key=lambda r: r["val_ndcg@10"])["epoch"] != 0)' "$1"
}

same_heads() {  # same_heads A.json B.json: do two head sets hold the same heads?
    python3 -c 'import json, sys; h = [json.load(open(p))["heads"] for p in sys.argv[1:]]; sys.exit(h[0] != h[1])' "$@"
}

select_and_train() {  # select_and_train NAME MODEL
    local name=$1 model=$2
    step "$name-select" select-heads --model "$model" --out "runs/heads/$name-dl21.json"
    step "$name-select-qrhead" select-heads --model "$model" --preset qrhead --out "runs/heads/$name-dl21-qrhead.json"
    step "$name-train" train --heads "runs/heads/$name-dl21.json" --out "runs/ckpt/$name-dl21" --resume
}

section_smollm2() {
    step bm25 evaluate --method bm25 -b "$ALL"
    select_and_train smollm2 smollm2-135m-instruct
    for depth in 8 12 16; do
        step "smollm2-select-d$depth" select-heads --model smollm2-135m-instruct --max-depth "$depth" --out "runs/heads/smollm2-dl21-d$depth.json"
    done
    rerankers smollm2 k20 smollm2-135m-instruct 20 first-stage "$ALL"
    for depth in 8 12 16; do
        step "smollm2-k20-dl21-d$depth" evaluate --model smollm2-135m-instruct --method heads --heads "runs/heads/smollm2-dl21-d$depth.json" \
            --shared-capture -b "$ALL"
    done
    step smollm2-k20-icr-own evaluate --model smollm2-135m-instruct --method icr -b "$ALL"  # ICR with its own capture (its latency row)
    step smollm2-k20-generative evaluate --method generative -b "$ALL"
    step smollm2-k20-pointwise evaluate --method pointwise -b "$ALL"
}

section_qwen() {
    select_and_train qwen "$QWEN"
    # The default recipe stopped early with no epoch above the untrained head set on validation; a lower
    # learning rate was tried next (chosen on DL21 validation only; RESULTS.md, Qwen section).
    step qwen-train-lr3e-5 train --heads runs/heads/qwen-dl21.json --out runs/ckpt/qwen-dl21-lr3e-5 --lr 3e-5 \
        --epochs 2 --resume
    # Neither beat it; then adapters only on the head layers, two shuffled lists per query (more pairs, cheaper
    # steps). The evaluation below uses whichever recipe scored best on validation.
    step qwen-train-hl-x2 train --heads runs/heads/qwen-dl21.json --out runs/ckpt/qwen-dl21-hl-x2 \
        --lora-layers head-layers --lists-per-query 2 --epochs 2 --resume
    rerankers qwen k20 "$QWEN" 20 first-stage "$ALL"
}

section_reversed() {
    rerankers smollm2 k20-reversed smollm2-135m-instruct 20 reversed "$ALL"
    rerankers qwen k20-reversed "$QWEN" 20 reversed "$ALL"
    # Both orders, scores averaged: every run they need is one of the above or of the first-stage sections,
    # reused (seconds each) when those sections ran; otherwise these steps compute what is missing.
    rerankers smollm2 k20-both smollm2-135m-instruct 20 both "$ALL"
    rerankers qwen k20-both "$QWEN" 20 both "$ALL"
}

section_k50() {
    step bm25-k50 evaluate --method bm25 -K 50 -b dl19,dl20
    rerankers smollm2 k50 smollm2-135m-instruct 50 first-stage dl19,dl20
    rerankers qwen k50 "$QWEN" 50 first-stage dl19,dl20
    # The same 50 candidates in sliding windows of 20 (stride 10, bottom up): HeadRank as chosen and trained.
    step smollm2-k50-w20-dl21 evaluate --model smollm2-135m-instruct --method heads --heads runs/heads/smollm2-dl21.json -K 50 --window 20 \
        -b dl19,dl20 --fuse-first-stage 0.5
    step smollm2-k50-w20-trained evaluate --method heads --model runs/ckpt/smollm2-dl21 -K 50 --window 20 \
        -b dl19,dl20 --fuse-first-stage 0.5
}

section_ablations() {
    # The entropy term. The DL21 sweep is rerun with lambda fixed at 0 and with lambda > 0 only
    # (observations are cached: seconds). Whichever of the two differs from the main head set is the
    # ablation: "no entropy" when the sweep chose lambda > 0, "entropy forced" when it chose lambda 0.
    step abl-no-entropy-select select-heads --model smollm2-135m-instruct --lambdas 0 --out runs/heads/smollm2-dl21-lambda0.json
    step abl-entropy-select select-heads --model smollm2-135m-instruct --lambdas 0.1,0.3,1 --out runs/heads/smollm2-dl21-entropy.json
    local entropy=no-entropy entropy_heads=runs/heads/smollm2-dl21-lambda0.json
    if [[ -e $entropy_heads && -e runs/heads/smollm2-dl21.json ]] &&
        same_heads "$entropy_heads" runs/heads/smollm2-dl21.json; then
        entropy=entropy-forced entropy_heads=runs/heads/smollm2-dl21-entropy.json
    fi
    step "abl-$entropy-untrained" evaluate --model smollm2-135m-instruct --method heads --heads "$entropy_heads" --shared-capture -b "$ALL"
    local -A flags=(
        [random-pairs]="--pair-mode random-adjacent"
        [no-regularizer]="--alpha 0"
        [no-reference]="--no-reference"
        [any-gap]="--pair-mode any-gap"
        [qkvo]="--targets q_proj,k_proj,v_proj,o_proj"
        [first-stage-lists]="--list-order first-stage"
    )
    local name
    for name in "$entropy" random-pairs no-regularizer no-reference any-gap qkvo first-stage-lists; do
        local heads=runs/heads/smollm2-dl21.json extra=()
        if [[ $name == "$entropy" ]]; then
            heads=$entropy_heads
        else
            read -r -a extra <<<"${flags[$name]}"
        fi
        step "abl-$name-train" train --heads "$heads" --out "runs/ckpt/abl-$name" --resume "${extra[@]}"
        step "abl-$name-eval" evaluate --method heads --model "runs/ckpt/abl-$name" -b dl19,dl20,noveleval
    done
    # q/k/v/o scored best on DL21 validation of every SmolLM2 recipe: its fourth set, for the four-set average.
    step abl-qkvo-nfcorpus evaluate --method heads --model runs/ckpt/abl-qkvo -b nfcorpus
    # Did first-stage-ordered training lists teach position? Their checkpoint in reversed order, against the
    # trained row's reversed rows (reproduce step smollm2-k20-reversed-trained).
    step abl-first-stage-lists-reversed evaluate --method heads --model runs/ckpt/abl-first-stage-lists \
        --order reversed -b dl19,dl20,noveleval
}

section_default() {
    # The shipped default's fusion weight and safety valve, rebuilt by the every-domain rule (learn/choose.py)
    # from the recorded scores of its heads on the 309 validation lists (seconds; the card's validation rows to
    # the fourth decimal). Its heads came from an all-head pool by the same rule: section default-heads.
    step default-choose choose --scores results/int8-quality-qwen-scores.jsonl --column float32 \
        --out runs/default-choice.json
    step default-eval evaluate --method heads --model headrank-qwen2.5-coder-0.5b -b "$ALL" --fuse-first-stage 0.6 \
        --safety-valve
}

section_default-heads() {
    # The default's heads, chosen again by the every-domain rule from an all-head pool of the preset's previous
    # version (the LoRA adapter its heads were observed through, before a87f172 replaced it): one full-depth
    # capture per list of the 409 in the plan (learn.pool.POOL_PLAN), then heads, fusion and valve under the
    # depth cap. The heads should be the shipped 16; fusion and valve are those of the adapter version (the
    # shipped ones were re-chosen on the base model: section default).
    local previous=runs/preset-previous
    if [[ $LIST_ONLY == 0 && ! -e $previous/headset.json ]]; then
        mkdir -p "$previous"
        git archive a87f172^ src/headrank/presets/headrank-qwen2.5-coder-0.5b | tar -x --strip-components=4 -C "$previous"
    fi
    step default-heads-pool pool --preset "$previous" --out runs/pool-qwen
    step default-heads-choose choose --pool runs/pool-qwen --cap 18 --training-split "$previous" \
        --out runs/default-heads.json
}

main() {
    cd "$(dirname "$0")/.."
    mkdir -p runs/done runs/logs
    local sections=() arg section
    for arg in "$@"; do
        case $arg in
            --list) LIST_ONLY=1 ;;
            smollm2 | qwen | reversed | k50 | ablations | default | default-heads) sections+=("$arg") ;;
            *) echo "unknown section: $arg (smollm2, qwen, reversed, k50, ablations, default, default-heads," \
                "--list)" >&2; exit 2 ;;
        esac
    done
    [[ ${#sections[@]} -gt 0 ]] || { sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
    for section in "${sections[@]}"; do
        "section_$section"
    done
}

[[ ${BASH_SOURCE[0]} != "$0" ]] || main "$@"  # sourced (tests): only define the functions
