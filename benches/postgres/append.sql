-- PostgreSQL alone writing the rows of one 500-op append under the space's row lock
-- (the limit of the parts for PostgreSQL ingest; see BENCHMARKS.md).
\set base random(1, 1000000000)
BEGIN;
SELECT id, head FROM b_spaces WHERE id = 1 FOR NO KEY UPDATE;
INSERT INTO b_ops (space_id, seq, op_id, user_name, op, change_len, mark)
  SELECT 1, (SELECT head FROM b_spaces WHERE id = 1) + i, uuid_send(gen_random_uuid()), 'c1', convert_to(repeat('x', 300), 'UTF8'), 250, :base FROM generate_series(1, 500) i
  ON CONFLICT (space_id, op_id) DO NOTHING;
INSERT INTO b_changes (space_id, collection, record, hash, max_op)
  SELECT 1, 'contacts', 'r' || (:base + i), sha256(((:base + i)::text)::bytea), 6 FROM generate_series(1, 500) i ON CONFLICT DO NOTHING;
INSERT INTO b_actors (space_id, collection, record, actor, seq, max_op)
  SELECT 1, 'contacts', 'r' || (:base + i), uuid_send(gen_random_uuid()), 1, 6 FROM generate_series(1, 500) i
  ON CONFLICT DO NOTHING;
UPDATE b_spaces SET head = head + 500 WHERE id = 1;
COMMIT;
