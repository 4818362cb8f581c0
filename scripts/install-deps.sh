#!/bin/sh
# Installs the Debian packages cachebench needs, when they are missing. Run as root (CI, fresh machines);
# as another user it only reports what is missing.
set -e
PKGS="build-essential pkg-config libopenblas-openmp-dev libhdf5-dev libcjson-dev libcriterion-dev libpng-dev
libinih-dev libsentencepiece-dev sentencepiece gnuplot-nox hdf5-tools python3-numpy python3-h5py python3-h5netcdf python3-xarray python3-skimage python3-torch"
missing=""
for p in $PKGS; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" != 0 ]; then
    echo "cachebench: missing Debian packages:$missing" >&2
    echo "cachebench: install them with: sudo apt-get install$missing" >&2
    exit 1
fi
echo "cachebench: installing$missing"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends $missing
