# Database hooks, as Kompose users write them: keep a schema snapshot beside every dump,
# and show which dump is about to be loaded. db hooks get PGHOST, PGPORT, PGUSER, PGPASSWORD
# and PGDATABASE, so pg_dump/psql here reach the same database as kompose, password-free argv.

hook_pre_db_export() {
  echo "  exporting $DB_NAME from $DB_HOST"
}

hook_post_db_export() {
  local dump=$1 snapshot="${1%%.sql*}.schema.txt"
  # A schema-only snapshot next to the dump, for quick diffs between releases.
  pg_dump --no-password --schema-only --no-owner >"$snapshot" || return
  echo "  schema snapshot: $(basename "$snapshot")"
}

hook_pre_db_import() {
  local dump=$1 schema
  schema=$(ls -1 ./*.schema.txt 2>/dev/null | sort | tail -n 1)
  echo "  importing $(basename "$dump") into $DB_NAME (newest schema snapshot: ${schema:-none})"
}

hook_post_db_import() {
  echo "  $DB_NAME now holds $(basename "$1")"
}
