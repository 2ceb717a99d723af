-- HDB++'s TimescaleDB layout as plain PostgreSQL tables (no TimescaleDB extension).
--
-- Written for tango_bokeh (LGPL-3.0-or-later) after the layout of
-- hdbpp-timescale-project's resources/schema/hdb_schema.sql
-- (github.com/tango-controls-hdbpp/hdbpp-timescale-project, ESRF, LGPL-3.0-or-later):
-- the same table and column names and types, so that pyhdbpp's TimescaleDbReader
-- reads it as it reads a TimescaleDB archive. Left out: CREATE EXTENSION timescaledb
-- and create_hypertable() (Debian has no TimescaleDB package; they change the
-- storage, not the SQL a reader runs), the array and DevEncoded tables,
-- att_parameter, the aggregate views. Loaded by tests/postgres.py into an existing database.

DO $$ BEGIN
    CREATE DOMAIN uchar AS numeric(3) CHECK (VALUE >= 0 AND VALUE <= 255);
    CREATE DOMAIN ushort AS numeric(5) CHECK (VALUE >= 0 AND VALUE <= 65535);
    CREATE DOMAIN ulong AS numeric(10) CHECK (VALUE >= 0 AND VALUE <= 4294967295);
    CREATE DOMAIN ulong64 AS numeric(20) CHECK (VALUE >= 0 AND VALUE <= 18446744073709551615);
EXCEPTION
    WHEN duplicate_object THEN null;
END $$;

CREATE TABLE IF NOT EXISTS att_conf_type (
    att_conf_type_id serial PRIMARY KEY,
    type text NOT NULL UNIQUE,
    type_num smallint NOT NULL UNIQUE
);
INSERT INTO att_conf_type (type, type_num) VALUES
    ('DEV_BOOLEAN', 1), ('DEV_SHORT', 2), ('DEV_LONG', 3), ('DEV_FLOAT', 4),
    ('DEV_DOUBLE', 5), ('DEV_USHORT', 6), ('DEV_ULONG', 7), ('DEV_STRING', 8),
    ('DEV_STATE', 19), ('DEV_UCHAR', 22), ('DEV_LONG64', 23), ('DEV_ULONG64', 24),
    ('DEV_ENCODED', 28), ('DEV_ENUM', 30)
ON CONFLICT DO NOTHING;

CREATE TABLE IF NOT EXISTS att_conf_format (
    att_conf_format_id serial PRIMARY KEY,
    format text NOT NULL UNIQUE,
    format_num smallint NOT NULL UNIQUE
);
INSERT INTO att_conf_format (format, format_num) VALUES ('SCALAR', 0), ('SPECTRUM', 1), ('IMAGE', 2)
ON CONFLICT DO NOTHING;

CREATE TABLE IF NOT EXISTS att_conf_write (
    att_conf_write_id serial PRIMARY KEY,
    write text NOT NULL UNIQUE,
    write_num smallint NOT NULL UNIQUE
);
INSERT INTO att_conf_write (write, write_num) VALUES
    ('READ', 0), ('READ_WITH_WRITE', 1), ('WRITE', 2), ('READ_WRITE', 3)
ON CONFLICT DO NOTHING;

-- One row per archived attribute; table_name is the data table of its type.
CREATE TABLE IF NOT EXISTS att_conf (
    att_conf_id serial PRIMARY KEY,
    att_name text NOT NULL UNIQUE,
    att_conf_type_id smallint NOT NULL REFERENCES att_conf_type (att_conf_type_id),
    att_conf_format_id smallint NOT NULL REFERENCES att_conf_format (att_conf_format_id),
    att_conf_write_id smallint NOT NULL REFERENCES att_conf_write (att_conf_write_id),
    table_name text NOT NULL,
    cs_name text NOT NULL DEFAULT '',
    domain text NOT NULL DEFAULT '',
    family text NOT NULL DEFAULT '',
    member text NOT NULL DEFAULT '',
    name text NOT NULL DEFAULT '',
    ttl int,
    hide boolean DEFAULT false
);

CREATE TABLE IF NOT EXISTS att_history_event (
    att_history_event_id serial PRIMARY KEY,
    event text NOT NULL
);

CREATE TABLE IF NOT EXISTS att_history (
    att_conf_id integer NOT NULL REFERENCES att_conf (att_conf_id),
    att_history_event_id integer NOT NULL REFERENCES att_history_event (att_history_event_id),
    event_time timestamp WITH TIME ZONE,
    details json,
    PRIMARY KEY (att_conf_id, event_time)
);

CREATE TABLE IF NOT EXISTS att_error_desc (
    att_error_desc_id serial PRIMARY KEY,
    error_desc text NOT NULL UNIQUE
);

-- The scalar data tables, one per Tango type: att_scalar_devdouble, ... (value_r and
-- value_w of the type's SQL type; data_time is the Tango timestamp, to the microsecond).
DO $$
DECLARE
    kind record;
BEGIN
    FOR kind IN SELECT * FROM (VALUES
        ('devboolean', 'boolean'), ('devuchar', 'uchar'), ('devshort', 'smallint'),
        ('devushort', 'ushort'), ('devlong', 'integer'), ('devulong', 'ulong'),
        ('devlong64', 'bigint'), ('devulong64', 'ulong64'), ('devfloat', 'real'),
        ('devdouble', 'double precision'), ('devstring', 'text'), ('devstate', 'integer'),
        ('devenum', 'smallint')
    ) AS k (name, sql_type)
    LOOP
        EXECUTE format(
            'CREATE TABLE IF NOT EXISTS att_scalar_%1$s (
                att_conf_id integer NOT NULL REFERENCES att_conf (att_conf_id),
                data_time timestamp WITH TIME ZONE NOT NULL,
                value_r %2$s,
                value_w %2$s,
                quality smallint,
                att_error_desc_id integer REFERENCES att_error_desc (att_error_desc_id),
                details json,
                PRIMARY KEY (att_conf_id, data_time)
            )', kind.name, kind.sql_type);
        EXECUTE format(
            'CREATE INDEX IF NOT EXISTS att_scalar_%1$s_att_conf_id_data_time_idx '
            'ON att_scalar_%1$s (att_conf_id, data_time DESC)', kind.name);
    END LOOP;
END $$;
-- Enums keep each value's label too.
ALTER TABLE att_scalar_devenum
    ADD COLUMN IF NOT EXISTS value_r_label text, ADD COLUMN IF NOT EXISTS value_w_label text;
