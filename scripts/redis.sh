#!/usr/bin/env bash
# Start a throwaway Redis for the tests (shared rate limits across replicas) and print the
# line that points the tests at it:  eval "$(bash scripts/redis.sh)"
# Installs Debian's redis-server when missing. The server listens on loopback only, keeps
# nothing on disk, and exits with the machine (or `redis-cli -p PORT shutdown`).
set -euo pipefail
if ! command -v redis-server >/dev/null; then
  if [ "$(id -u)" = 0 ]; then
    apt-get install -y -q redis-server >&2 || { apt-get update -q >&2 && apt-get install -y -q redis-server >&2; }
  else
    sudo apt-get install -y -q redis-server >&2
  fi
fi
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
dir=$(mktemp -d)
redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no --daemonize yes \
  --dir "$dir" --logfile "$dir/redis.log" >&2
for _ in $(seq 50); do
  redis-cli -p "$port" ping >/dev/null 2>&1 && break
  sleep 0.1
done
redis-cli -p "$port" ping >/dev/null
echo "export HEARTH_TEST_REDIS_URL=redis://127.0.0.1:$port"
