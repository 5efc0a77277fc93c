"""The git layer: the only importer of pygit2 and the only runner of the git binary.

* :mod:`~gitstore.git.repo`: :class:`~gitstore.git.repo.Repo`, the way in from
  above: open/create, objects, refs, configuration;
* :mod:`~gitstore.git.objects`, :mod:`~gitstore.git.refs`: writing objects,
  compare-and-swap ref updates;
* :mod:`~gitstore.git.walk`: the one reachability walker over the object graph;
* :mod:`~gitstore.git.packs`: packs and git bundles;
* :mod:`~gitstore.git.integrity`: damaged objects, broken refs, stale locks, reflogs;
* :mod:`~gitstore.git.housekeeping`: packing a repository small, the write counter;
* :mod:`~gitstore.git.binary`: running ``git`` (bundle clones, pack indexing);
* :mod:`~gitstore.git.locking`, :mod:`~gitstore.git.signing`: writer locks, SSH signatures.

Nothing above this package imports pygit2 or starts git.
"""
