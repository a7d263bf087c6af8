#!/usr/bin/env bash
# A complete operator session with curl against a real `prewarm controller` (the one shown in docs/api.md).
#
# Starts the controller on a free 127.0.0.1 port with a temporary SQLite store and a `dry-run` deployment (nothing
# is started), then runs and prints every command (`$ command`) with its output: create a deployment, push fresh
# samples, patch the policy (and see one rejected), forecast, pin replicas, see the decisions, end the pin early,
# and a request without a token. The controller is stopped and the temporary files removed on exit.
#
#   bash scripts/operator_session.sh
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PREWARM_BIN="$ROOT/.venv/bin/prewarm"
[[ -x "$PREWARM_BIN" ]] || { echo "missing $PREWARM_BIN: run 'make venv' first" >&2; exit 1; }
command -v curl >/dev/null || { echo "curl is needed" >&2; exit 1; }

WORK="$(mktemp -d /tmp/prewarm-session.XXXXXX)"
CONTROLLER_PID=""

cleanup() {
    local status=$?
    if [[ -n "$CONTROLLER_PID" ]] && kill -0 "$CONTROLLER_PID" 2>/dev/null; then
        kill -TERM "$CONTROLLER_PID" 2>/dev/null || true
        for _ in $(seq 1 100); do  # up to 10 s to drain, then force
            kill -0 "$CONTROLLER_PID" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$CONTROLLER_PID" 2>/dev/null || true
        wait "$CONTROLLER_PID" 2>/dev/null || true
    fi
    if [[ $status -ne 0 && -f "$WORK/controller.log" ]]; then
        echo "--- controller log (last 40 lines) ---" >&2
        tail -n 40 "$WORK/controller.log" >&2 || true
    fi
    rm -rf "$WORK"
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

PORT="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')"

# The controller's environment: only what the session needs (Prometheus off, the store is the metrics source).
controller_env=(
    env -u PREWARM_PROMETHEUS_URL -u PREWARM_READ_TOKENS -u PREWARM_ADMIN_TOKENS_FILE -u PREWARM_PROTECT_READS
    "PREWARM_DATABASE_URL=sqlite:///$WORK/prewarm.db"
    "PREWARM_ADMIN_TOKENS=alice:demo-token-123"
    "PREWARM_REPLICA_STATE_DIR=$WORK/state"
)
(cd "$ROOT" && "${controller_env[@]}" "$PREWARM_BIN" db upgrade) >"$WORK/upgrade.log" 2>&1 \
    || { cat "$WORK/upgrade.log" >&2; exit 1; }
(cd "$ROOT" && exec "${controller_env[@]}" "$PREWARM_BIN" controller --host 127.0.0.1 --port "$PORT" \
    --state-dir "$WORK/state") >"$WORK/controller.log" 2>&1 &
CONTROLLER_PID=$!

PREWARM="http://127.0.0.1:$PORT/api/v1"
for _ in $(seq 1 150); do  # up to 30 s
    curl -sf "$PREWARM/health" >/dev/null 2>&1 && break
    kill -0 "$CONTROLLER_PID" 2>/dev/null || { echo "the controller exited" >&2; exit 1; }
    sleep 0.2
done
curl -sf "$PREWARM/health" >/dev/null || { echo "the controller did not become healthy" >&2; exit 1; }

cd "$WORK"
AUTH="Authorization: Bearer demo-token-123"
JSON="Content-Type: application/json"
export PREWARM AUTH JSON

# Print a command as `$ command`, run it, and leave a blank line after its output.
show() {
    printf '$ %s\n' "$1"
    eval "$1"
    printf '\n'
}

echo "# prewarm controller --port $PORT (SQLite store in a temporary directory, PREWARM_ADMIN_TOKENS=alice:demo-token-123)"
echo
show "PREWARM=http://127.0.0.1:$PORT/api/v1; AUTH=\"Authorization: Bearer demo-token-123\"; JSON=\"Content-Type: application/json\""

show "curl -s -X POST \$PREWARM/deployments -H \"\$AUTH\" -H \"\$JSON\" -d '{\"name\": \"digits\", \"model\": \"digits_mlp\", \"backend\": \"dry-run\", \"backend_config\": {\"initial_replicas\": 2}, \"min_replicas\": 1, \"max_replicas\": 8, \"price_per_replica_hour\": 0.12, \"policy\": {\"decision_interval_s\": 1}}'"

# Five minutes of per-second samples ending now: about 200 rps with a slow wave, CPU following the load.
show "python3 -c 'import json, math, time; now = int(time.time()); ts = range(now - 299, now + 1); rps = {t: round(200 + 20 * math.sin(t / 60), 1) for t in ts}; print(json.dumps({\"samples\": [{\"metric\": \"rps\", \"ts\": t, \"value\": rps[t]} for t in ts] + [{\"metric\": \"cpu_percent\", \"ts\": t, \"value\": round(rps[t] / 5, 1)} for t in ts]}))' > samples.json"

show "curl -s -X POST \$PREWARM/deployments/digits/samples -H \"\$AUTH\" -H \"\$JSON\" --data @samples.json"

show "curl -s -X PATCH \"\$PREWARM/deployments/digits/policy?comment=capacity+measured+by+wrk\" -H \"\$AUTH\" -H \"\$JSON\" -H 'If-Match: \"1\"' -d '{\"replica_capacity_rps\": 120, \"target_utilisation\": 0.7, \"forecast_model\": \"auto\", \"forecast_step_s\": 10}' | python3 -c 'import json,sys; v=json.load(sys.stdin); p=v[\"policy\"]; print({k: v[k] for k in (\"version\", \"author\", \"comment\")}); print({k: p[k] for k in (\"min_replicas\", \"max_replicas\", \"replica_capacity_rps\", \"target_utilisation\", \"decision_interval_s\", \"forecast_model\", \"forecast_step_s\", \"forecast_min_history_s\")})'"

show "curl -s -X PATCH \$PREWARM/deployments/digits/policy -H \"\$AUTH\" -H \"\$JSON\" -d '{\"min_replicas\": 9}' -w '\\nHTTP %{http_code} %{content_type}\\n'"

show "curl -s -X POST \$PREWARM/deployments/digits/forecasts:refresh -H \"\$AUTH\" | python3 -c 'import json,sys; f=json.load(sys.stdin); print({k: f[k] for k in (\"model\", \"created_at\", \"step_s\", \"horizon_s\")}); print(\"notes:\", f[\"detail\"][\"notes\"], \"history points:\", f[\"detail\"][\"history_points\"]); print(\"selection (backtest MAE):\", f[\"detail\"].get(\"selection\"))'"

show "curl -s \"\$PREWARM/deployments/digits/forecasts/latest?horizon_s=60\" | python3 -c 'import json,sys; f=json.load(sys.stdin); print(f[\"model\"], len(f[\"points\"]), \"points\"); [print(p[\"ts\"], \"point %.1f  band %.1f .. %.1f\" % (p[\"point\"], p[\"lower\"], p[\"upper\"])) for p in f[\"points\"]]'"

show "curl -s \$PREWARM/deployments/digits/status | python3 -c 'import json,sys; s=json.load(sys.stdin); d=s[\"last_decision\"]; print({k: s[k] for k in (\"current_replicas\", \"desired_replicas\", \"ready_replicas\", \"policy_version\")}); print(\"last decision:\", d[\"ts\"], d[\"source\"], d[\"current\"], \"->\", d[\"desired\"]); [print(\"  \", r) for r in d[\"reasons\"]]'"

show "curl -s -X POST \$PREWARM/deployments/digits/overrides -H \"\$AUTH\" -H \"\$JSON\" -d '{\"kind\": \"pin\", \"value\": 6, \"duration_s\": 60, \"reason\": \"product launch webinar\"}' | python3 -m json.tool"

show "sleep 3"

show "curl -s \$PREWARM/deployments/digits/status | python3 -c 'import json,sys; s=json.load(sys.stdin); print({k: s[k] for k in (\"current_replicas\", \"desired_replicas\", \"ready_replicas\")}); print(\"active overrides:\", [(o[\"id\"], o[\"kind\"], o[\"value\"], o[\"reason\"]) for o in s[\"active_overrides\"]])'"

show "curl -s \"\$PREWARM/deployments/digits/decisions?limit=3\" | python3 -c 'import json,sys; [print(d[\"ts\"], d[\"source\"], d[\"current\"], \"->\", d[\"desired\"], \"applied\" if d[\"applied\"] else \"\", \"\\n   \" + \"\\n   \".join(d[\"reasons\"])) for d in json.load(sys.stdin)[\"items\"]]'"

show "curl -s -X DELETE \$PREWARM/deployments/digits/overrides/1 -H \"\$AUTH\" | python3 -m json.tool --compact"

show "sleep 3"

show "curl -s \$PREWARM/deployments/digits/status | python3 -c 'import json,sys; s=json.load(sys.stdin); print({k: s[k] for k in (\"current_replicas\", \"desired_replicas\", \"ready_replicas\")}); print(\"active overrides:\", s[\"active_overrides\"])'"

show "curl -s \"\$PREWARM/deployments/digits/decisions?limit=2\" | python3 -c 'import json,sys; [print(d[\"ts\"], d[\"source\"], d[\"current\"], \"->\", d[\"desired\"], \"applied\" if d[\"applied\"] else \"\", \"\\n   \" + \"\\n   \".join(d[\"reasons\"])) for d in json.load(sys.stdin)[\"items\"]]'"

show "curl -s \"\$PREWARM/deployments/digits/overrides?state=past\" | python3 -m json.tool --compact"

show "curl -s \$PREWARM/deployments/digits/policy/versions | python3 -c 'import json,sys; [print(v[\"version\"], v[\"author\"], repr(v[\"comment\"]), v[\"policy\"][\"replica_capacity_rps\"]) for v in json.load(sys.stdin)[\"items\"]]'"

show "curl -s -X DELETE \$PREWARM/deployments/digits/overrides/1 -w '\\nHTTP %{http_code}\\n'"
