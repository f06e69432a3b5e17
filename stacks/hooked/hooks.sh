# A hook for every phase of `up` and `down`, each printing what it receives, so you can see
# the contract at work:  kompose hooked up -d   /   kompose hooked down
# Hooks are plain bash functions; kompose calls each in a fresh bash, in this folder.

show() {
  printf '  [%s] args:' "$KOMPOSE_HOOK"
  printf ' <%s>' "$@"
  printf '\n  [%s] cwd=%s stack=%s command=%s\n' "$KOMPOSE_HOOK" "$PWD" "$stack" "$KOMPOSE_COMMAND"
  if [ -n "${KOMPOSE_STATUS:-}" ]; then
    printf '  [%s] status=%s exit=%s failed_step=%s after %sms\n' "$KOMPOSE_HOOK" \
      "$KOMPOSE_STATUS" "$KOMPOSE_EXIT_CODE" "${KOMPOSE_FAILED_STEP:-none}" "$KOMPOSE_DURATION_MS"
  fi
}

hook_pre_up() {
  show "$@"
  # Values written here join the environment of `docker compose up` and later hooks.
  echo "STARTED_BY=kompose-example" >>"$KOMPOSE_ENV_FILE"
}
hook_post_up() { show "$@"; echo "  [post_up] STARTED_BY=$STARTED_BY"; }
hook_error_up() { show "$@"; }
hook_finally_up() { show "$@"; }

hook_pre_down() { show "$@"; }
hook_post_down() { show "$@"; }
hook_error_down() { show "$@"; }
hook_finally_down() { show "$@"; }

hook_pre_ps() { show "$@"; }
hook_post_ps() { show "$@"; }
