"""Old-format copies of the run-record seeds (`make fuzz-corpus`): HDF5 files with a version-0 superblock and
version-1 object headers, as h5py writes with libver="earliest" and as older tools write by default. That format
has no metadata checksums, so mutated bytes reach far deeper into HDF5's parser than in the files we write (whose
checksums reject most mutations at once). Usage: make_record_seeds.py SRC.h5 DST.h5"""
import sys

import h5py

src, dst = sys.argv[1], sys.argv[2]
with h5py.File(src, "r") as fin, h5py.File(dst, "w", libver="earliest") as fout:
    for name, value in fin.attrs.items():
        fout.attrs[name] = value
    for name in fin:
        fin.copy(fin[name], fout, name=name)
