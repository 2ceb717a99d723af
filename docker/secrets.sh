#!/bin/sh
# Create the secrets docker/compose.yaml reads (once; existing files are kept):
#   tango_bokeh_secret  random, signs sessions and login cookies (shared by the replicas)
#   tango_db_password   random, the MariaDB password of the Tango database server
#   jupyter_token       random, JupyterLab's token (printed)
#   tango_bokeh_users   the dashboard users (name:scrypt$...), made with the image itself:
#                         docker/secrets.sh alice      # asks alice's password twice
# The directory is $TANGO_BOKEH_SECRETS (default docker/secrets), mode 700, files mode 600.
set -eu
dir=${TANGO_BOKEH_SECRETS:-$(dirname "$0")/secrets}
mkdir -p "$dir" && chmod 700 "$dir"
umask 077
random() { head -c 36 /dev/urandom | base64 | tr '+/' '-_'; }
for name in tango_bokeh_secret tango_db_password jupyter_token; do
  [ -s "$dir/$name" ] || { random > "$dir/$name"; echo "created $dir/$name"; }
done
[ -e "$dir/tango_bokeh_users" ] || : > "$dir/tango_bokeh_users"
echo "JupyterLab token: $(cat "$dir/jupyter_token")"
if [ $# -gt 0 ]; then
  # the users file is written by the image's own tool (salted scrypt), in a throw-away container
  docker run --rm -it --user "$(id -u):$(id -g)" -v "$(cd "$dir" && pwd):/secrets" \
    --entrypoint python "tango-bokeh:${TANGO_BOKEH_TAG:-local}" \
    -m tango_bokeh.dashboard.auth /secrets/tango_bokeh_users "$1"
fi
