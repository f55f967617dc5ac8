#!/usr/bin/env bash
# `make demo`: generate S1GRD and LULC from the shipped Sentinel-2 L2A sample with the official TerraMind weights.
# Without network access and without the weights in the Hugging Face cache, it says what to do, then shows the
# pipeline working on RANDOM weights (clearly labelled, written apart) so a fresh machine still proves its set-up.
set -uo pipefail
geomind="$1"; out="$2"; shift 2
scene=samples/terramind/282D_485L_3_3_S2L2A.tif

if "$geomind" weights path base S1GRD LULC >/dev/null 2>&1 || [ "${HF_HUB_OFFLINE:-0}" != "1" ]; then
  "$geomind" generate "$scene" --to S1GRD LULC -o "$out" --preview --overwrite "$@"
  status=$?  # right after the command: after an `if ... fi` it would be the if's own status, always 0
  if [ "$status" -eq 0 ]; then
    echo "demo: outputs in $out/ (GeoTIFF/COG + PNG quick-looks)"
    exit 0
  fi
  "$geomind" weights path base S1GRD LULC >/dev/null 2>&1 && exit "$status"  # a real failure, not missing weights
fi

cat >&2 <<MSG

demo: the official TerraMind weights are not in the Hugging Face cache and cannot be downloaded from here.
      On a machine with internet access run:   $geomind weights download base S1GRD LULC
      then copy its Hugging Face cache (\$HF_HOME, default ~/.cache/huggingface) to this machine, or set HF_HOME
      to a copy, and run 'make demo' again. See README, "Offline use".

demo: meanwhile, a smoke run of the same pipeline with RANDOM WEIGHTS (outputs are noise) in $out/random-weights/
MSG
"$geomind" generate "$scene" --to S1GRD LULC -o "$out/random-weights" --preview --overwrite \
  --weights random --model tiny --timesteps 5
