-- Tables like the PostgreSQL store's (src/server/store/postgres/schema.rs), for append.sql.
DROP TABLE IF EXISTS b_spaces, b_ops, b_changes, b_actors;
CREATE TABLE b_spaces (id bigint PRIMARY KEY, head bigint NOT NULL);
INSERT INTO b_spaces VALUES (1, 0);
CREATE TABLE b_ops (space_id bigint NOT NULL, seq bigint NOT NULL, op_id bytea NOT NULL, user_name text NOT NULL, op bytea NOT NULL, change_len integer NOT NULL, mark bigint NOT NULL DEFAULT 0, PRIMARY KEY (space_id, seq), UNIQUE (space_id, op_id));
CREATE TABLE b_changes (space_id bigint NOT NULL, collection text COLLATE "C" NOT NULL, record text COLLATE "C" NOT NULL, hash bytea NOT NULL, max_op bigint NOT NULL, PRIMARY KEY (space_id, collection, record, hash));
CREATE TABLE b_actors (space_id bigint NOT NULL, collection text COLLATE "C" NOT NULL, record text COLLATE "C" NOT NULL, actor bytea NOT NULL, seq bigint NOT NULL, max_op bigint NOT NULL, PRIMARY KEY (space_id, collection, record, actor));
