"""Pickled item caches: few-shot samples (``split_fewshot/shot_K-seed_S.pkl``) and ImageNet's
``preprocessed.pkl``.

Both hold pickled ``Datum`` objects with absolute paths, in the format of CoOp's code, so caches
written there load here and the other way round. DATA folders are shared between users, so a cache
is unpickled building nothing but ``Datum`` records and plain containers: a file that pickles
anything else is refused unread, naming it, and nothing in it runs. Moving the data folder would
make the paths stale, so they are rebased onto the current dataset folder when read. A few-shot
cache is also checked against the split it must have been sampled from (ours carry a fingerprint
of that split, upstream's are compared item by item). Writes are atomic and respect the umask.
"""

import hashlib
import os
import os.path as osp
import pickle
import secrets

from dassl.data.datasets import Datum
from dassl.utils.safe_unpickle import PLAIN_CONTAINERS, RefusedGlobalError, load_allowed_pickle

FEWSHOT_DIRNAME = "split_fewshot"
# Keys our few-shot caches add next to upstream's "train"/"val"; upstream code ignores them.
CACHE_DATASET_DIR_KEY = "dataset_dir"
CACHE_FINGERPRINT_KEY = "split_fingerprint"
# The globals a cache may name: plain containers and Datum, at the module path that CoOp's Dassl
# pickles it under too.
CACHE_GLOBALS = {**PLAIN_CONTAINERS, ("dassl.data.datasets.base_dataset", "Datum"): Datum}


def read_item_cache(path):
    """Unpickle the cache ``path``, building only ``Datum`` records and plain containers.

    Raises:
        RefusedGlobalError: the file pickles another global (``.name``); nothing was built from it.
        Whatever reading or unpickling a damaged file raises.
    """
    with open(path, "rb") as f:
        return load_allowed_pickle(f, CACHE_GLOBALS)


def refused_cache_problem(what, path, error):
    """The problem line for a cache that ``read_item_cache`` refused (``error``)."""
    return (
        f"refused {what} {path} unread: it pickles {error.name}, where only Datum records and plain "
        "data belong (nothing in the file was run)"
    )


def _relpath_in(impath, folder):
    """``impath`` relative to ``folder`` if it lies inside it, else None."""
    prefix = folder.rstrip(os.sep) + os.sep
    return impath[len(prefix) :] if impath.startswith(prefix) else None


def split_fingerprint(sources, dataset_dir):
    """SHA-256 of the sorted (relative path, label, classname) triples of each source list.

    ``sources`` maps "train"/"val" to the full lists a cache is sampled from. Paths are taken
    relative to ``dataset_dir``, so the fingerprint survives moving the data folder.
    """
    digest = hashlib.sha256()
    for key in sorted(sources):
        triples = sorted(
            f"{_relpath_in(item.impath, dataset_dir) or item.impath}\t{item.label}\t{item.classname}"
            for item in sources[key]
        )
        for triple in triples:
            digest.update(f"{key}\t{triple}\n".encode())
    return digest.hexdigest()


def _locate_cached_image(impath, stored_dir, dataset_dir):
    """Where a cached image is now, and its path relative to the dataset folder (or None).

    Our caches record the dataset folder they were written under, so their paths are rebased
    onto the current one. Upstream caches hold bare absolute paths: a path that still exists is
    used as is; otherwise the part after the last ``<dataset_dir name>`` component whose
    rebased path exists (or just the last one) is rebased.
    """
    for folder in (stored_dir, dataset_dir):
        rel = _relpath_in(impath, folder) if folder else None
        if rel is not None:
            return osp.join(dataset_dir, rel), rel
    parts = impath.replace("\\", "/").split("/")
    starts = [i + 1 for i, part in enumerate(parts) if part == osp.basename(dataset_dir)]
    candidates = ["/".join(parts[start:]) for start in reversed(starts) if start < len(parts)]
    rel = next((c for c in candidates if osp.isfile(osp.join(dataset_dir, c))), None)
    rel = rel or (candidates[0] if candidates else None)
    if osp.isfile(impath) or rel is None:
        return impath, rel
    return osp.join(dataset_dir, rel), rel


def rebase_item_lists(lists, dataset_dir):
    """Point the cached paths of ``lists`` (lists of Datum) into ``dataset_dir``, in place.

    For ImageNet's preprocessed.pkl, which stores absolute paths and not the folder it was
    written under: that folder is found from the first item as for an upstream few-shot cache,
    and every item under it is rebased. Returns the old folder, or None when the first path
    exists as it is (nothing moved) or cannot be placed.
    """
    first = lists[0][0].impath
    new_path, rel = _locate_cached_image(first, None, dataset_dir)
    if rel is None or new_path == first:
        return None
    prefix = first[: len(first) - len(rel)]  # the old dataset folder, with its trailing separator
    for items in lists:
        for item in items:
            if item.impath.startswith(prefix):
                # The pickled attribute itself: a new Datum would stat each of ImageNet's 1.3M files.
                item._impath = osp.join(dataset_dir, item.impath[len(prefix) :])
    return prefix.rstrip("/\\")


def _cache_error(context, problem, path):
    return context.error(
        problem,
        path,
        f"few-shot cache {path}",
        fix=f"delete {osp.basename(path)} (or all of {osp.dirname(path)}/) to have it sampled again",
    )


def load_fewshot_cache(path, sources, dataset_dir, context):
    """Load a few-shot cache and check it against the split it must have been sampled from.

    Args:
        path (str): ``.../split_fewshot/shot_K-seed_S.pkl``.
        sources (dict): "train" (and "val") -> the full lists of the current split.
        dataset_dir (str): the current dataset folder.

    Returns a dict with the same keys as ``sources``: lists of Datum whose paths point into
    ``dataset_dir``. Raises ``DatasetLayoutError`` for an unreadable cache, a missing image or
    a cache sampled from another split.
    """
    try:
        data = read_item_cache(path)
    except RefusedGlobalError as e:
        raise _cache_error(context, refused_cache_problem("the few-shot cache", path, e), path) from None
    except Exception as e:  # any other unpickling failure means the same thing: an unusable file
        raise _cache_error(context, f"cannot read the few-shot cache ({e!r})", path) from None
    if not isinstance(data, dict) or any(not isinstance(data.get(key), list) for key in sources):
        raise _cache_error(context, f"not a few-shot cache: expected a dict with the lists {list(sources)}", path)
    fingerprint = data.get(CACHE_FINGERPRINT_KEY)
    if fingerprint is not None and fingerprint != split_fingerprint(sources, dataset_dir):
        raise _cache_error(context, "the few-shot cache was sampled from a different split", path)

    loaded = {}
    for key in sources:
        items, relpaths = [], []
        for index, item in enumerate(data[key]):
            try:
                impath, label, domain, classname = item.impath, item.label, item.domain, item.classname
            except AttributeError:
                raise _cache_error(context, f'entry {index} of "{key}" is not a Datum', path) from None
            new_path, rel = _locate_cached_image(impath, data.get(CACHE_DATASET_DIR_KEY), dataset_dir)
            if not osp.isfile(new_path):
                raise _cache_error(
                    context,
                    f"the few-shot cache refers to a missing image: {new_path} (stored as {impath})",
                    path,
                )
            items.append(Datum(impath=new_path, label=label, domain=domain, classname=classname))
            relpaths.append(rel)
        if fingerprint is None:
            _check_sampled_from(items, relpaths, sources[key], key, dataset_dir, path, context)
        loaded[key] = items
    return loaded


def _check_sampled_from(items, relpaths, source, key, dataset_dir, path, context):
    """Upstream caches carry no fingerprint: every item must belong to the current split."""
    current = {(_relpath_in(item.impath, dataset_dir), item.label, item.classname) for item in source}
    for index, (item, rel) in enumerate(zip(items, relpaths)):
        if (rel, item.label, item.classname) not in current:
            raise _cache_error(
                context,
                f'the few-shot cache was sampled from a different split: entry {index} of "{key}" '
                f"({rel or item.impath}, "
                f"label {item.label}, {item.classname!r}) is not in the current split's {key}",
                path,
            )


def write_pickle_atomically(obj, path, context, needed_for):
    """Pickle ``obj`` (HIGHEST_PROTOCOL) to ``path`` through a temporary file in its folder.

    The temporary file is created with mode 0666 minus the umask, as ``open`` creates files, so
    other users of a shared data folder can read the cache (``mkstemp`` would make it 0600).
    Its random name keeps two processes that write the same cache from sharing it.
    """
    folder = osp.dirname(path)
    tmp_path = osp.join(folder, f".tmp-{secrets.token_hex(8)}-{osp.basename(path)}")
    created = False
    try:
        fd = os.open(tmp_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        created = True
        with os.fdopen(fd, "wb") as f:
            pickle.dump(obj, f, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(tmp_path, path)
    except OSError as e:
        raise context.error(
            f"cannot write into the folder ({e})",
            folder,
            needed_for,
            fix="the dataset folder must be writable",
        ) from None
    finally:  # also after Ctrl-C: no partial temporary file stays behind
        if created and osp.exists(tmp_path):
            os.remove(tmp_path)


def save_fewshot_cache(path, data, sources, dataset_dir, context):
    """Write ``data`` ("train"/"val" lists) in upstream's format plus our two extra keys."""
    payload = dict(data)
    payload[CACHE_DATASET_DIR_KEY] = dataset_dir
    payload[CACHE_FINGERPRINT_KEY] = split_fingerprint(sources, dataset_dir)
    write_pickle_atomically(payload, path, context, f"saving the few-shot cache {path}")
