#!/bin/sh
# Render /etc/nginx/conf.d/tango-bokeh.conf from the template, then run nginx.
#   TANGO_BOKEH_UPSTREAMS  replicas, space-separated HOST:PORT (default dashboards:5006:
#                          the compose service, which resolves to every replica when
#                          nginx starts: restart nginx after scaling)
#   NGINX_LISTEN           port (default 80)
set -eu
for upstream in ${TANGO_BOKEH_UPSTREAMS:-dashboards:5006}; do
  printf '    server %s max_fails=1 fail_timeout=5s;\n' "$upstream"
done > /tmp/servers
sed -e "/^@SERVERS@\$/{r /tmp/servers" -e "d}" \
    -e "s/listen @LISTEN@;/listen ${NGINX_LISTEN:-80};/" \
    /etc/nginx/templates/tango-bokeh.conf.template > /etc/nginx/conf.d/tango-bokeh.conf
rm -f /tmp/servers
nginx -t -q
exec nginx -g 'daemon off;'
