#!/bin/sh
# Entrypoint of the Python services of docker/compose.yaml. Runs as root only to read
# the compose secrets (bind mounts that keep the host file's owner and mode), then
# drops to the unprivileged user `beamline` and runs one role:
#
#   serve       tango-bokeh serve DIR/*.yaml for each DIR of $TANGO_BOKEH_DASHBOARD_DIRS
#               (default /etc/tango-bokeh/dashboards) on :5006: one replica
#   sim         the simulated beamline, registered on $TANGO_HOST (device servers on
#               every interface, so the other containers reach them)
#   jupyterlab  JupyterLab on :8888 with the example notebooks
#   (other)     the command as given
#
# Secrets: /run/secrets/tango_bokeh_secret -> $TANGO_BOKEH_SECRET (signs sessions and
# login cookies, shared by every replica); /run/secrets/tango_bokeh_users -> a private
# copy given to --users (the server refuses a users file others can read);
# /run/secrets/jupyter_token -> $JUPYTER_TOKEN.
set -eu

home=/home/beamline
run_as() { HOME=$home exec setpriv --reuid=beamline --regid=beamline --init-groups "$@"; }

if [ "$(id -u)" = 0 ]; then
  if [ -r /run/secrets/tango_bokeh_secret ]; then
    TANGO_BOKEH_SECRET=$(cat /run/secrets/tango_bokeh_secret)
    export TANGO_BOKEH_SECRET
  fi
  if [ -r /run/secrets/tango_bokeh_users ]; then
    install -o beamline -g beamline -m 600 /run/secrets/tango_bokeh_users "$home/users"
  fi
  if [ -r /run/secrets/jupyter_token ]; then
    JUPYTER_TOKEN=$(cat /run/secrets/jupyter_token)
    export JUPYTER_TOKEN
  fi
  state=${TANGO_BOKEH_STATE:-/var/lib/tango-bokeh}
  mkdir -p "$state" && chown beamline:beamline "$state" && chmod 700 "$state"
else
  run_as() { exec "$@"; }
fi

role=${1:-serve}
case "$role" in
  serve)
    shift || true
    files=""
    for dir in ${TANGO_BOKEH_DASHBOARD_DIRS:-/etc/tango-bokeh/dashboards}; do
      for file in "$dir"/*.yaml; do
        [ -f "$file" ] && files="$files $file"
      done
    done
    [ -n "$files" ] || { echo "no dashboard files (*.yaml) in $TANGO_BOKEH_DASHBOARD_DIRS" >&2; exit 1; }
    # shellcheck disable=SC2086 # one word per file (dashboard file names have no spaces)
    set -- tango-bokeh serve $files --address 0.0.0.0 --port 5006 \
      --secrets-dir "${TANGO_BOKEH_STATE:-/var/lib/tango-bokeh}" \
      --allow-websocket-origin 127.0.0.1:5006 --allow-websocket-origin localhost:5006 "$@"
    for origin in ${TANGO_BOKEH_ORIGINS:-localhost:8080 127.0.0.1:8080}; do
      set -- "$@" --allow-websocket-origin "$origin"
    done
    for proxy in ${TANGO_BOKEH_TRUSTED_PROXY:-10.0.0.0/8 172.16.0.0/12 192.168.0.0/16}; do
      set -- "$@" --trusted-proxy "$proxy"
    done
    if [ -f "$home/users" ]; then
      set -- "$@" --users "$home/users"
    fi
    # shellcheck disable=SC2086 # TANGO_BOKEH_ARGS is a list of options
    run_as "$@" ${TANGO_BOKEH_ARGS:-}
    ;;
  sim)
    shift
    run_as tango-bokeh sim --use-tango-host --server-address 0.0.0.0 \
      --state-dir /tmp/beamline "$@"
    ;;
  jupyterlab)
    shift
    cp -rn /opt/tango-bokeh/notebooks "$home/" 2>/dev/null || true
    chown -R beamline:beamline "$home/notebooks"
    run_as env HOME="$home" jupyter lab --ip 0.0.0.0 --port 8888 --no-browser \
      --ServerApp.root_dir="$home/notebooks" "$@"
    ;;
  *)
    run_as "$@"
    ;;
esac
