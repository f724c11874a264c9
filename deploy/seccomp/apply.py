#!/usr/bin/python3
"""Run a command under a Docker/OCI-format seccomp profile, without Docker.

    apply.py [--user UID[:GID]] PROFILE.json -- COMMAND [ARGS...]

Installs the profile with libseccomp (Debian: python3-seccomp), optionally drops to UID:GID
(no supplementary groups), then execs COMMAND. This is how the tests check
deploy/seccomp/chrome.json on a machine with no container runtime: the kernel enforces the same
BPF filter that runc builds from the profile.

Only the flat subset of the format is read, the one that both Docker and the OCI runtime spec
(what containerd passes on for a Kubernetes `Localhost` profile) understand: `defaultAction`,
`defaultErrnoRet`, `architectures`, and `syscalls[]` with `names`, `action`, `errnoRet`,
`args[]` (`index`, `value`, `valueTwo`, `op`) and a free-text `comment`. Docker-only keys that
depend on the container (`includes`, `excludes`, `archMap`) are refused, naming the field,
because a profile using them would mean different things under Docker and under Kubernetes.

As runc does, syscall names the kernel/libseccomp does not know for this architecture are
skipped, and a rule whose action is the default action is a no-op. Like Docker without
`--security-opt no-new-privileges`, no_new_privs is left unset when running as root.
"""

import argparse
import errno
import json
import os
import sys

try:
    import seccomp
except ImportError:  # pragma: no cover - depends on the machine
    sys.exit("apply.py: error: the libseccomp Python bindings are missing (apt-get install python3-seccomp)")

ARCHES = {
    "SCMP_ARCH_X86_64": seccomp.Arch.X86_64,
    "SCMP_ARCH_X86": seccomp.Arch.X86,
    "SCMP_ARCH_X32": seccomp.Arch.X32,
    "SCMP_ARCH_AARCH64": seccomp.Arch.AARCH64,
    "SCMP_ARCH_ARM": seccomp.Arch.ARM,
}

OPS = {
    "SCMP_CMP_NE": seccomp.NE,
    "SCMP_CMP_LT": seccomp.LT,
    "SCMP_CMP_LE": seccomp.LE,
    "SCMP_CMP_EQ": seccomp.EQ,
    "SCMP_CMP_GE": seccomp.GE,
    "SCMP_CMP_GT": seccomp.GT,
    "SCMP_CMP_MASKED_EQ": seccomp.MASKED_EQ,
}

TOP_KEYS = {"defaultAction", "defaultErrnoRet", "architectures", "syscalls"}
RULE_KEYS = {"names", "action", "errnoRet", "args", "comment"}
ARG_KEYS = {"index", "value", "valueTwo", "op"}


class ProfileError(Exception):
    """A profile this loader cannot apply; the message names the field."""


def action(field, name, errno_ret):
    if name == "SCMP_ACT_ALLOW":
        return seccomp.ALLOW
    if name == "SCMP_ACT_ERRNO":
        return seccomp.ERRNO(errno.EPERM if errno_ret is None else int(errno_ret))
    if name in ("SCMP_ACT_KILL", "SCMP_ACT_KILL_THREAD"):
        return seccomp.KILL
    if name == "SCMP_ACT_KILL_PROCESS":
        return seccomp.KILL_PROCESS
    if name == "SCMP_ACT_TRAP":
        return seccomp.TRAP
    if name == "SCMP_ACT_LOG":
        return seccomp.LOG
    raise ProfileError(f"{field}: unsupported action {name!r}")


def unknown_keys(field, value, allowed):
    if not isinstance(value, dict):
        raise ProfileError(f"{field}: expected an object")
    extra = sorted(set(value) - allowed)
    if extra:
        raise ProfileError(f"{field}.{extra[0]}: not supported (only the flat Docker/OCI subset is)")


def build_filter(profile):
    unknown_keys("profile", profile, TOP_KEYS)
    default_errno = profile.get("defaultErrnoRet")
    default = action("defaultAction", profile.get("defaultAction"), default_errno)
    f = seccomp.SyscallFilter(default)
    native = seccomp.system_arch()
    for i, arch in enumerate(profile.get("architectures") or []):
        if arch not in ARCHES:
            raise ProfileError(f"architectures[{i}]: unknown architecture {arch!r}")
        token = ARCHES[arch]
        if int(token) == int(native):
            continue
        try:
            f.add_arch(token)
        except RuntimeError:
            # An architecture libseccomp cannot combine with the native one: runc skips it too.
            pass
    skipped = []
    for i, rule in enumerate(profile.get("syscalls") or []):
        field = f"syscalls[{i}]"
        unknown_keys(field, rule, RULE_KEYS)
        act = action(f"{field}.action", rule.get("action"), rule.get("errnoRet"))
        args = []
        for j, a in enumerate(rule.get("args") or []):
            unknown_keys(f"{field}.args[{j}]", a, ARG_KEYS)
            op = OPS.get(a.get("op"))
            if op is None:
                raise ProfileError(f"{field}.args[{j}].op: unknown operator {a.get('op')!r}")
            if op == seccomp.MASKED_EQ:
                args.append(seccomp.Arg(int(a["index"]), op, int(a["value"]), int(a.get("valueTwo", 0))))
            else:
                args.append(seccomp.Arg(int(a["index"]), op, int(a["value"])))
        names = rule.get("names")
        if not isinstance(names, list) or not names:
            raise ProfileError(f"{field}.names: expected a non-empty list of syscall names")
        for name in names:
            # -1: no architecture knows the name. Other negative numbers are libseccomp's
            # pseudo-syscalls (a syscall of another architecture in the filter): kept.
            if seccomp.resolve_syscall(seccomp.Arch.NATIVE, name) == -1:
                skipped.append(name)
                continue
            try:
                f.add_rule(act, name, *args)
            except RuntimeError as e:
                # -13 (EACCES): the rule's action is the default action; it changes nothing.
                if "errno = -13" in str(e):
                    continue
                raise ProfileError(f"{field}: cannot add {name}: {e}") from e
    return f, skipped


def parse_user(text):
    uid, _, gid = text.partition(":")
    uid = int(uid)
    return uid, int(gid) if gid else uid


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--user", help="UID[:GID] to run COMMAND as (needs root)")
    parser.add_argument("--verbose", action="store_true", help="list skipped syscall names")
    parser.add_argument("profile")
    parser.add_argument("command", nargs=argparse.REMAINDER)
    opts = parser.parse_args()
    command = opts.command[1:] if opts.command[:1] == ["--"] else opts.command
    if not command:
        parser.error("no COMMAND given (apply.py PROFILE -- COMMAND ...)")

    try:
        with open(opts.profile, encoding="utf-8") as fh:
            profile = json.load(fh)
        f, skipped = build_filter(profile)
    except (OSError, ValueError, ProfileError) as e:
        sys.exit(f"apply.py: error: {opts.profile}: {e}")
    if opts.verbose and skipped:
        print(f"apply.py: skipped unknown syscalls: {' '.join(skipped)}", file=sys.stderr)

    root = os.geteuid() == 0
    # Without CAP_SYS_ADMIN the kernel only accepts a filter with no_new_privs set.
    f.set_attr(seccomp.Attr.CTL_NNP, 0 if root else 1)
    f.load()

    if opts.user:
        if not root:
            sys.exit("apply.py: error: --user needs root")
        uid, gid = parse_user(opts.user)
        os.setgroups([])
        os.setgid(gid)
        os.setuid(uid)
    try:
        os.execvp(command[0], command)
    except OSError as e:
        sys.exit(f"apply.py: error: cannot run {command[0]}: {e}")


if __name__ == "__main__":
    main()
