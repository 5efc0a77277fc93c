"""The git layer: the only importer of pygit2 and the only runner of the git binary.

* :mod:`~gitstore.git.repo`: :class:`~gitstore.git.repo.Repo`, the way in from
  above: open/create, objects, refs, configuration;
* :mod:`~gitstore.git.objects`, :mod:`~gitstore.git.refs`: writing objects,
  compare-and-swap ref updates;
* :mod:`~gitstore.git.catfile`, :mod:`~gitstore.git.rawobjects`,
  :mod:`~gitstore.git.reffiles`: the second reader (``git cat-file`` and the ref
  files, parsed as libgit2 parses them), which the
  CLI's read commands use so that they need not load libgit2;
* :mod:`~gitstore.git.walk`: the one reachability walker over the object graph;
* :mod:`~gitstore.git.wholerepo`, :mod:`~gitstore.git.packs`: packs and git bundles;
* :mod:`~gitstore.git.integrity`: damaged objects, broken refs, stale locks, reflogs;
* :mod:`~gitstore.git.housekeeping`: packing a repository small, the write counter;
* :mod:`~gitstore.git.binary`: running ``git`` (bundle clones, pack indexing; the
  second reader starts its own ``git cat-file`` and ``git config``);
* :mod:`~gitstore.git.locking`, :mod:`~gitstore.git.signing`: writer locks, SSH signatures.

Nothing above this package imports pygit2 or starts git.
"""
