#!/bin/sh
# The layers of the C code, lowest first. A folder (with its subfolders) may include its own headers and those of
# the folders listed after its name, never one above it: base utilities stay below everything that uses them.
# tests/, bench/ and fuzz/ sit on top and may include anything. Prints every include that points up; exits 1 if any.
# Usage: scripts/check-layers.sh [ROOT]   (ROOT: the repository, default: this script's parent folder)
root=${1:-$(dirname "$0")/..}
LAYERS='core:
models:core
datasets:core
metrics:core
strategies:core models
results:core models metrics strategies
harness:core models datasets metrics strategies results'
status=0
for entry in $(echo "$LAYERS" | tr ' ' ','); do
    folder=${entry%%:*}
    allowed="$folder $(echo "${entry#*:}" | tr ',' ' ')"
    [ -d "$root/$folder" ] || { echo "check-layers: $root/$folder: no such folder" >&2; exit 2; }
    out=$(cd "$root" && find "$folder" -type f \( -name '*.c' -o -name '*.h' -o -name '*.cu' -o -name '*.cuh' \) \
        -exec grep -HnE '^[[:space:]]*#[[:space:]]*include[[:space:]]*"[A-Za-z0-9_]+/' {} + 2>/dev/null |
        while IFS= read -r line; do
            target=$(echo "$line" | sed -E 's/^[^"]*"([A-Za-z0-9_]+)\/.*$/\1/')
            ok=0
            for a in $allowed; do [ "$target" = "$a" ] && ok=1; done
            [ $ok = 1 ] || echo "$line  <- $folder/ may include only: $allowed"
        done)
    if [ -n "$out" ]; then
        echo "$out"
        status=1
    fi
done
[ $status = 0 ] || echo "check-layers: includes above point up the layers (order: core < models, datasets, metrics < strategies < results < harness)" >&2
exit $status
