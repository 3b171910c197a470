-- The three tables as the ConPaaS 1.2 director (SQLAlchemy) creates them on
-- PostgreSQL: SERIAL keys, "user" quoted (a reserved word). IF NOT EXISTS: on an
-- adopted 1.2 database this does nothing, on a fresh one it creates the same
-- shape, so migration 2 starts from one known state either way.
CREATE TABLE IF NOT EXISTS "user" (
    uid SERIAL NOT NULL PRIMARY KEY,
    username VARCHAR(80) NOT NULL UNIQUE,
    fname VARCHAR(256),
    lname VARCHAR(256),
    email VARCHAR(256) UNIQUE,
    affiliation VARCHAR(256),
    password VARCHAR(256),
    created TIMESTAMP WITHOUT TIME ZONE,
    credit INTEGER
);

CREATE TABLE IF NOT EXISTS application (
    aid SERIAL NOT NULL PRIMARY KEY,
    name VARCHAR(256),
    user_id INTEGER REFERENCES "user" (uid)
);

CREATE TABLE IF NOT EXISTS service (
    sid SERIAL NOT NULL PRIMARY KEY,
    name VARCHAR(256),
    type VARCHAR(32),
    state VARCHAR(32),
    created TIMESTAMP WITHOUT TIME ZONE,
    manager VARCHAR(512),
    vmid VARCHAR(256),
    cloud VARCHAR(128),
    subnet VARCHAR(18),
    user_id INTEGER REFERENCES "user" (uid),
    application_id INTEGER REFERENCES application (aid)
);
