# Database hooks, as Kompose users write them: keep a schema snapshot beside every dump,
# and show which dump is about to be loaded. The server lives in this stack's `postgres`
# container, so the hooks reach it the same way kompose does: through `docker compose exec`
# (the hook runs in this folder with this stack's environment). The password never appears
# on a command line: `-e PGPASSWORD` passes it by name.

hook_pre_db_export() {
  echo "  exporting $DB_NAME from the $DB_HOST container"
}

hook_post_db_export() {
  local dump=$1 snapshot="${1%%.sql*}.schema.txt"
  # A schema-only snapshot next to the dump, for quick diffs between releases.
  docker compose exec -T -e PGPASSWORD postgres \
    pg_dump --no-password -h localhost -U "$DB_USER" --schema-only --no-owner "$DB_NAME" \
    >"$snapshot" || return
  echo "  schema snapshot: $(basename "$snapshot")"
}

hook_pre_db_import() {
  local dump=$1 schema
  schema=$(ls -1 ./*.schema.txt 2>/dev/null | sort | tail -n 1)
  echo "  importing $(basename "$dump") into $DB_NAME (newest schema snapshot: ${schema:-none})"
}

hook_post_db_import() {
  echo "  $DB_NAME now holds $(basename "$1"):" \
    "$(docker compose exec -T postgres psql -U "$DB_USER" -d "$DB_NAME" -At \
         -c 'SELECT count(*) FROM notes') notes"
}
