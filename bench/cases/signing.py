"""signing: SSH signatures made in process vs one ``ssh-keygen -Y sign`` per signature.

For each key type gitstore signs in process (ed25519, ecdsa nistp256, rsa
3072; keys made with ``ssh-keygen``), n version tags' worth of payloads (n =
200; quick: 20; each a real annotated-tag object without its signature) are
signed by ``gitstore.git.signing.signer`` (in process, with ``cryptography``)
and by ``ssh_keygen_signer`` (the fallback for agent-held and
passphrase-protected keys: one ssh-keygen process per signature, as git runs
it), taking turns. Target (issue 15 gives no number): in process faster than
ssh-keygen, i.e. ratio < 1.

Checked: every signature of both systems verifies with ``ssh-keygen -Y verify``
(a sample of each, one process each), and for the deterministic algorithms
(ed25519, rsa-sha2-512) the in-process signatures equal ssh-keygen's byte for
byte.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from gitstore.git import signing

from .. import common
from ..common import CaseResult, Context, check

NAME = "signing"
TITLE = "SSH signatures in process vs ssh-keygen -Y sign"
PRINCIPAL = "gitstore@gitstore.invalid"
#: key label -> (ssh-keygen options, deterministic signatures)
KEYS = {"ed25519": (["-t", "ed25519"], True),
        "ecdsa-nistp256": (["-t", "ecdsa", "-b", "256"], False),
        "rsa-3072": (["-t", "rsa", "-b", "3072"], True)}
TARGET = 1.0  # in process at most as slow as ssh-keygen (faster, in fact)
#: A fresh interpreter's first signature: loading the key (and, in process,
#: cryptography) and signing once; prints seconds. argv: key, "in process" or not.
COLD = """\
import sys, time
from pathlib import Path
from gitstore.git import signing
assert not any(m.split(".")[0] == "cryptography" for m in sys.modules)
key, in_process = Path(sys.argv[1]), sys.argv[2] == "in process"
start = time.perf_counter()
make = signing.signer if in_process else signing.ssh_keygen_signer
sign = make(key)
assert sign.in_process == in_process
signature = sign(b"payload")
print(time.perf_counter() - start)
"""


def payloads(n: int) -> list[bytes]:
    """n annotated-tag objects as gitstore signs them (the bytes before the signature)."""
    out = []
    for i in range(n):
        major, minor = divmod(i, 10)
        out.append((f"object {i:040x}\ntype commit\ntag v{major + 1}.{minor}.0\n"
                    f"tagger {common.AGENT[0]} <{common.AGENT[1]}> {1736935200 + i} +0000\n\n"
                    f"v{major + 1}.{minor}.0: {common.SESSION_ID}\n\nSession-Id: "
                    f"{common.SESSION_ID}\nSession-Version: v{major + 1}.{minor}.0\n").encode())
    return out


def ssh_verify(allowed: Path, payload: bytes, signature: bytes, scratch: Path) -> bool:
    sig = scratch / "payload.sig"
    sig.write_bytes(signature)
    proc = subprocess.run(["ssh-keygen", "-Y", "verify", "-f", str(allowed), "-I", PRINCIPAL,
                           "-n", signing.NAMESPACE, "-s", str(sig)], input=payload,
                          capture_output=True, check=False)
    return proc.returncode == 0


def cold(ctx: Context, key: Path) -> dict[str, list[float]]:
    """The first signature of a fresh process, in process and by ssh-keygen, taking turns."""
    samples: dict[str, list[float]] = {"in process": [], "ssh-keygen -Y sign": []}
    order = list(samples)
    for r in range(-1, ctx.runs):
        for name in order[r % 2:] + order[:r % 2]:
            proc = subprocess.run([sys.executable, "-c", COLD, str(key), name],
                                  capture_output=True, text=True, check=False,
                                  cwd=common.REPO_ROOT)
            check(proc.returncode == 0, f"cold signing ({name}) failed: {proc.stderr}")
            if r >= 0:
                samples[name].append(float(proc.stdout))
    return samples


def run(ctx: Context) -> CaseResult:
    res = CaseResult(NAME)
    n = ctx.pick(200, 20)
    scratch = ctx.tmpdir("signing")
    messages = payloads(n)
    for label, (options, deterministic) in KEYS.items():
        key = scratch / f"id_{label}"
        subprocess.run(["ssh-keygen", "-q", *options, "-N", "", "-C", label, "-f", str(key)],
                       check=True, capture_output=True, stdin=subprocess.DEVNULL)
        allowed = scratch / f"allowed_{label}"
        signing.write_allowed_signers(allowed, PRINCIPAL, key)
        in_process, keygen = signing.signer(key), signing.ssh_keygen_signer(key)
        check(isinstance(in_process, signing.KeySigner),
              f"{label}: gitstore does not sign in process with {key}")

        def gs(sign: signing.Signer = in_process) -> list[bytes]:
            return [sign(m) for m in messages]

        def sk(sign: signing.Signer = keygen) -> list[bytes]:
            return [sign(m) for m in messages]

        systems = {"in process": gs, "ssh-keygen -Y sign": sk}
        common.log(f"signing: {label}, {n} signatures, 1 warm-up + {ctx.runs} runs")
        samples, results = common.interleaved(ctx.runs, systems)
        step = max(1, n // 5)
        for name, sigs in results.items():
            check(len(sigs) == n and all(
                ssh_verify(allowed, messages[i], sigs[i], scratch) for i in range(0, n, step)),
                f"{label}: a {name} signature does not verify with ssh-keygen -Y verify")
        if deterministic:
            check(results["in process"] == results["ssh-keygen -Y sign"],
                  f"{label}: in-process signatures differ from ssh-keygen's")
        res.verified(f"{label}: signatures of both verify with ssh-keygen -Y verify"
                     + ("; in process equals ssh-keygen byte for byte" if deterministic
                        else ""))
        med = {s: common.median(v) for s, v in samples.items()}
        res.rows.append(common.time_row(
            NAME, f"{n} tags", f"sign, {label}", med["in process"],
            "ssh-keygen -Y sign (1 process each)", med["ssh-keygen -Y sign"],
            max_ratio=TARGET, target="< 1 (faster)",
            note=f"per signature {common.fmt_seconds(med['in process'] / n)} in process, "
                 f"{common.fmt_seconds(med['ssh-keygen -Y sign'] / n)} by ssh-keygen"))
        res.data[label] = {s: common.summary(v) for s, v in samples.items()}
        if label == "ed25519":
            first = {s: common.median(v) for s, v in cold(ctx, key).items()}
            per = med["ssh-keygen -Y sign"] / n - med["in process"] / n
            res.rows.append(common.time_row(
                NAME, "1 tag", f"first signature of a process, {label}", first["in process"],
                "ssh-keygen -Y sign (1 process)", first["ssh-keygen -Y sign"],
                note=f"in process pays once for importing cryptography and loading the key; "
                     f"it is ahead from about {max(1, round(first['in process'] / per))} "
                     f"signatures per process"))
            res.data["first signature"] = first
    return res
