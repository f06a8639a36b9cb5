"""Confinement primitives for the sandbox: namespaces, read-only mounts, rlimits, a throw-away uid.

Used by bootstrap.py (trusted, stdlib only).  The why of each measure is in the package docstring;
the functions here are the how.  :func:`enter_namespaces` runs in the bootstrap (root, before any
fork), :func:`confine_process` in the sandbox's last trusted process just before it execs the child.
"""
import ctypes
import os
import re
import resource
import stat

CLONE_NEWNS, CLONE_NEWIPC, CLONE_NEWNET, CLONE_NEWPID = 0x00020000, 0x08000000, 0x40000000, 0x20000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 32, 4096, 16384, 1 << 18
MNT_DETACH = 2
PR_SET_PDEATHSIG, PR_SET_DUMPABLE, PR_SET_CHILD_SUBREAPER, PR_SET_NO_NEW_PRIVS = 1, 4, 36, 38

libc = ctypes.CDLL(None, use_errno=True)
libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
libc.unshare.argtypes = [ctypes.c_int]
libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]


def _check(ret, what):
    if ret != 0:
        e = ctypes.get_errno()
        raise OSError(e, "%s: %s" % (what, os.strerror(e)))


def _enc(s):
    return None if s is None else s.encode()


def mount(src, target, fstype, flags, data=None):
    _check(libc.mount(_enc(src), _enc(target), _enc(fstype), flags, _enc(data)), "mount %s" % target)


def unshare(flags):
    _check(libc.unshare(flags), "unshare")


def prctl(option, arg):
    return libc.prctl(option, arg, 0, 0, 0)


def mountpoints():
    out = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            mp = line.split()[4]  # space, tab, newline and backslash are escaped as \ooo
            out.append(re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), mp))
    return out


def remount_all_readonly(notes):
    root_ok = False
    for mp in mountpoints():
        try:
            st = os.statvfs(mp)
        except OSError:
            continue
        keep = st.f_flag & (MS_NOSUID | MS_NODEV | MS_NOEXEC)  # ST_* values equal MS_* for these
        try:
            mount(None, mp, None, MS_REMOUNT | MS_BIND | MS_RDONLY | keep)
            if mp == "/":
                root_ok = True
        except OSError as e:
            notes.append("read-only remount of %s failed: %s" % (mp, e))
    return root_ok


def inaccessible_ancestor(path):
    """Top-most strict ancestor of `path` that others cannot traverse (None if all can)."""
    parts = path.strip("/").split("/")
    for i in range(len(parts)):
        anc = "/" + "/".join(parts[:i])
        if not (os.stat(anc).st_mode & stat.S_IXOTH):
            return anc
    return None


def expose_paths(paths, stage_root, notes):
    """Make each directory in `paths` reachable by unprivileged uids (read-only), see module doc."""
    groups = {}
    for p in paths:
        anc = inaccessible_ancestor(p)
        if anc is not None:
            groups.setdefault(anc, []).append(p)
    ok = True
    for anc, ps in groups.items():
        if anc == "/":
            notes.append("cannot expose %s: / is not traversable" % ps)
            ok = False
            continue
        staged = []
        for p in ps:
            st = os.path.join(stage_root, "%d" % len(staged))
            os.makedirs(st, exist_ok=True)
            mount(p, st, None, MS_BIND | MS_REC)
            staged.append((p, st))
        mount("tmpfs", anc, "tmpfs", MS_NOSUID | MS_NODEV, "size=64k,nr_inodes=256,mode=0755")
        for p, st in staged:
            os.makedirs(p, mode=0o755, exist_ok=True)
            mount(st, p, None, MS_BIND | MS_REC)
            try:
                mount(None, p, None, MS_REMOUNT | MS_BIND | MS_RDONLY)
            except OSError as e:
                notes.append("read-only bind of %s failed: %s" % (p, e))
            libc.umount2(_enc(st), MNT_DETACH)
    return ok


def _randrange(lo, hi):
    return lo + int.from_bytes(os.urandom(8), "little") % (hi - lo)  # (no `random` import: start-up time)


def pick_uid():
    """A random uid >= 10**9 inside our uid_map (so setuid works in a user-namespaced container)."""
    ranges = []
    try:
        with open("/proc/self/uid_map") as f:
            for line in f:
                inside, _outside, count = (int(x) for x in line.split())
                ranges.append((inside, inside + count))
    except OSError:
        ranges = [(0, 1 << 32)]
    lo, hi = 10 ** 9, 2 * 10 ** 9
    for a, b in ranges:
        a2, b2 = max(a, lo), min(b, hi)
        if b2 - a2 > 1000:
            return _randrange(a2, b2)
    for a, b in ranges:  # small map (e.g. 65536 ids): stay inside it, above the usual system ids
        a2, b2 = max(a, 40000), min(b, 65534)
        if b2 - a2 > 100:
            return _randrange(a2, b2)
    return 65534


# What a check needs before its candidate may run (and before its verdict may count): a uid of its own
# (so it can neither signal, trace nor rewrite the judge, and its process budget is its own), its own
# PID, mount, IPC and network namespaces, a read-only filesystem and private temp directories.
REQUIRED = ("uid_dropped", "nproc_limited", "pid_namespace", "mount_namespace", "ipc_namespace",
            "network_isolated", "fs_readonly", "private_tmp")


def missing(iso):
    """The measures of :data:`REQUIRED` that are not in place according to the report ``iso``."""
    return [key for key in REQUIRED if iso.get(key) is not True]


def new_report(root):
    """The ``isolation`` report, every measure off until it is in place (never claimed silently)."""
    return {
        "root": root, "uid_dropped": False, "uid": os.geteuid(), "nproc_limited": False,
        "network_isolated": False, "pid_namespace": False, "mount_namespace": False,
        "ipc_namespace": False, "fs_readonly": False, "private_tmp": False, "notes": [],
    }


def enter_namespaces(cfg, iso):
    """Unshare what we can, make the filesystem read-only with private tmpfs, expose Python.

    Returns (workdir, can_drop): the sandbox's working directory as seen from inside, and whether an
    unprivileged uid will be able to run Python.  Records every measure (and failure) in ``iso``."""
    notes = iso["notes"]
    workdir = cfg["host_workdir"]
    if not cfg["isolate"]:
        return workdir, False
    if not iso["root"]:
        notes.append("not root: no namespaces and no uid change (rlimits, temp dir, clean env only)")
        return workdir, False
    for key, flag in (("mount_namespace", CLONE_NEWNS), ("network_isolated", CLONE_NEWNET),
                      ("ipc_namespace", CLONE_NEWIPC), ("pid_namespace", CLONE_NEWPID)):
        try:
            unshare(flag)
            iso[key] = True
        except OSError as e:
            notes.append("unshare %s failed: %s" % (key, e))
    if not iso["mount_namespace"]:
        can_drop = all(inaccessible_ancestor(p) is None for p in cfg["needed_paths"])
        if not can_drop:
            notes.append("python is not reachable by an unprivileged uid without a mount namespace")
        return workdir, can_drop
    mount(None, "/", None, MS_REC | MS_PRIVATE)
    iso["fs_readonly"] = remount_all_readonly(notes)
    tmp_ok = False
    for d, size in (("/tmp", cfg["tmpfs_mb"]), ("/var/tmp", 1), ("/dev/shm", 1), ("/run/lock", 1)):
        if os.path.isdir(d) and not os.path.islink(d):
            try:
                mount("tmpfs", d, "tmpfs", MS_NOSUID | MS_NODEV, "size=%dm,nr_inodes=4096,mode=1777" % size)
                tmp_ok = tmp_ok or d == "/tmp"
            except OSError as e:
                notes.append("tmpfs on %s failed: %s" % (d, e))
    iso["private_tmp"] = tmp_ok
    if tmp_ok:
        workdir = "/tmp/sandbox"
        os.mkdir(workdir, 0o700)
    else:
        # the host workdir sits on a now read-only mount: give it its own tmpfs
        mount("tmpfs", workdir, "tmpfs", MS_NOSUID | MS_NODEV,
              "size=%dm,nr_inodes=4096,mode=0700" % cfg["tmpfs_mb"])
    stage = os.path.join(workdir, ".stage")
    os.mkdir(stage, 0o700)
    can_drop = expose_paths(cfg["needed_paths"], stage, notes)
    for name in os.listdir(stage):
        os.rmdir(os.path.join(stage, name))
    os.rmdir(stage)
    return workdir, can_drop


def confine_process(limits, iso, can_drop, workdir):
    """rlimits, then (as root, when Python stays reachable) a fresh random uid; no new privileges."""
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    resource.setrlimit(resource.RLIMIT_CPU, (limits["cpu"], limits["cpu"] + 1))
    resource.setrlimit(resource.RLIMIT_AS, (limits["as"], limits["as"]))
    resource.setrlimit(resource.RLIMIT_FSIZE, (limits["fsize"], limits["fsize"]))
    resource.setrlimit(resource.RLIMIT_NOFILE, (limits["nofile"], limits["nofile"]))
    resource.setrlimit(resource.RLIMIT_NPROC, (limits["nproc"], limits["nproc"]))
    if iso["root"] and can_drop:
        uid = pick_uid()
        os.chown(workdir, uid, uid)
        os.chmod(workdir, 0o700)
        os.setgroups([])
        os.setgid(uid)
        os.setuid(uid)
        iso["uid_dropped"] = os.getuid() == uid and os.geteuid() == uid
        iso["uid"] = uid
    iso["nproc_limited"] = os.getuid() != 0
    prctl(PR_SET_NO_NEW_PRIVS, 1)
    os.chdir(workdir)
    iso["workdir"] = workdir
