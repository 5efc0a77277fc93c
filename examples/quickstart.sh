#!/usr/bin/env bash
# The gitstore quickstart: record the example deployment-advisor session turn by
# turn, finalize v1.0.0, follow up to v1.1.0, correct to v1.1.1, render the SOW,
# then look at the result the way an auditor would: with plain git only.
#
# Uses the store in $GITSTORE_ROOT (default: ./sessions). Run from anywhere.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
export GITSTORE_ROOT="${GITSTORE_ROOT:-sessions}"
customer=customer-xyz789
sid=orchestrator-session-4f1c2d9e-8b7a-4e21-9c3d-5a6b7c8d9e0f
# Headings go to stderr, in bold only when stderr is a terminal (and NO_COLOR is unset):
# a log file or a pipe gets plain text, no escape sequences.
if [ -t 2 ] && [ -z "${NO_COLOR:-}" ]; then
    step() { printf '\n\033[1m== %s\033[0m\n' "$*" >&2; }
else
    step() { printf '\n== %s\n' "$*" >&2; }
fi

gitstore init
if gitstore versions "$customer" >/dev/null 2>&1; then
    echo "$customer is already recorded in $GITSTORE_ROOT; skipping to the audit view" >&2
else
    step "v1.0.0: a new deployment scenario, recorded turn by turn"
    gitstore new "$customer" --session-id "$sid" --created 2025-01-15T10:30:00Z
    for turn in "$here"/session/turns/turn-*.json; do
        gitstore turn "$customer" "$turn"
    done
    python3 -c 'import json,sys; print(json.dumps(json.load(open(sys.argv[1]))["conversation_summary"]))' \
        "$here/session/conversation.json" | gitstore summary "$customer" -
    gitstore put "$customer" deployment_context.json "$here/session/deployment_context.json"
    gitstore put "$customer" session_analytics.json "$here/session/session_analytics.json"
    gitstore put "$customer" session_metadata.json "$here/session/session_metadata.json"
    gitstore finalize "$customer" -m "deployment plan agreed with the customer"

    step "v1.1.0: a follow-up conversation the same afternoon"
    gitstore follow-up "$customer" -m "customer asked about alarms and tracing"
    for turn in "$here"/follow_up/turns/turn-*.json; do
        gitstore turn "$customer" "$turn"
    done
    gitstore put "$customer" session_metadata.json "$here/follow_up/session_metadata.json"
    gitstore finalize "$customer" -m "follow-up questions answered"

    step "v1.1.1: a data correction (actual implementation time came in)"
    gitstore correct "$customer" "$here/correction/session_analytics.json" \
        --reason "customer reported the actual implementation time"
fi

step "gitstore versions $customer"
gitstore versions "$customer"

step "The statement of work of the newest version (first 20 lines)"
gitstore show "$customer" sow_document.md | sed -n 1,20p

step "The auditor's view, plain git: git -C $GITSTORE_ROOT/$customer log --decorate"
git -C "$GITSTORE_ROOT/$customer" log --decorate \
    --format='%h%d %ad %an: %s%n        %(trailers:key=Change,key=Session-Version,key=Turn,separator=%x2C )' \
    --date=short -n 12

step "Checked with plain git: git fsck --strict and sha256sum -c on git archive"
git -C "$GITSTORE_ROOT/$customer" fsck --strict --no-progress && echo "fsck: clean"
tmp="$(mktemp -d)"
git -C "$GITSTORE_ROOT/$customer" archive v1.1.1 | tar -x -C "$tmp"
(cd "$tmp" && sha256sum -c SHA256SUMS)
rm -rf "$tmp"
gitstore verify "$customer"
