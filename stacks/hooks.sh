# Root hooks: they apply to every stack. For a hook point the root function runs before the
# stack's own for "pre", after it for post/error/finally.

# Every example stack joins one shared network; make sure it exists before any `up`.
hook_pre_up() {
  docker network inspect "${NETWORK_NAME:-kompose}" >/dev/null 2>&1 \
    || docker network create "${NETWORK_NAME:-kompose}" >/dev/null
}

# After the last stack is down, the network goes too (docker refuses while it is in use).
hook_post_down() {
  docker network rm "${NETWORK_NAME:-kompose}" >/dev/null 2>&1 || true
}
