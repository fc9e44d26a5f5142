-- bifrost-async-postgres schema version 1: jobs, counters for the bounds, idempotency claims,
-- and the functions that make every write one atomic round trip.
-- @schema@ is replaced by the quoted schema name (store option ``schema``).

-- One row per stored job. ``record`` is the job's JSON exactly as bifrost_async wrote it
-- (Job.to_record_json), so a repeated write is recognised by comparing text. The other columns
-- copy what the queries decide on. ``expires_at`` is NULL while the job is unfinished;
-- ``lease_expires_at`` is NULL once it is terminal. Times are epoch seconds by the writer's clock.
CREATE TABLE @schema@.jobs (
    id text COLLATE "C" PRIMARY KEY,
    owner text COLLATE "C" NOT NULL,
    request_type text COLLATE "C" NOT NULL,
    status text NOT NULL,
    created_at double precision NOT NULL,
    expires_at double precision,
    lease_expires_at double precision,
    claim text COLLATE "C",
    record text NOT NULL
);
-- expiry: reads treat expired rows as absent; the purge deletes them by this index
CREATE INDEX jobs_expiry ON @schema@.jobs (expires_at) WHERE expires_at IS NOT NULL;
-- an owner's expired rows not yet purged (subtracted from its counter for the share)
CREATE INDEX jobs_owner_expiry ON @schema@.jobs (owner, expires_at) WHERE expires_at IS NOT NULL;
-- the orphan sweep: unfinished jobs by lease
CREATE INDEX jobs_leases ON @schema@.jobs (lease_expires_at)
    WHERE status IN ('pending', 'processing') AND lease_expires_at IS NOT NULL;
-- listing: one owner's jobs of one type, newest first
CREATE INDEX jobs_listing ON @schema@.jobs (owner, request_type, created_at DESC, id DESC);

-- Rows in ``jobs`` (live or expired and not yet purged). Every create, delete and purge locks
-- this one row first, so they run one at a time across every process (no deadlocks, exact
-- bounds under READ COMMITTED); compare-and-set updates never touch it.
CREATE TABLE @schema@.total (
    only_row boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    n bigint NOT NULL
);
INSERT INTO @schema@.total VALUES (true, 0);

-- Rows in ``jobs`` per owner ('' is every anonymous caller), for the per-owner share.
CREATE TABLE @schema@.owners (
    owner text COLLATE "C" PRIMARY KEY,
    n bigint NOT NULL
);

-- Idempotency claims. Live while its job lives (judged by the job's expiry) or, when the job
-- does not exist, until ``lapses_at`` (Infinity once the job is created, its expiry once it ends).
CREATE TABLE @schema@.claims (
    claim text COLLATE "C" PRIMARY KEY,
    job_id text COLLATE "C" NOT NULL,
    fingerprint text NOT NULL,
    lapses_at double precision NOT NULL
);
CREATE INDEX claims_lapse ON @schema@.claims (lapses_at);

-- create_job: 1 stored (or this very record is stored already), 0 another record holds the id,
-- -1 the bound (p_max_jobs > 0) is reached, -2 the owner holds its share (p_max_owner > 0).
CREATE FUNCTION @schema@.create_job(
    p_id text, p_owner text, p_type text, p_status text, p_created double precision,
    p_expires double precision, p_lease double precision, p_claim text, p_record text,
    p_now double precision, p_max_jobs bigint, p_max_owner bigint
) RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    existing text;
    total_rows bigint;
    owner_rows bigint;
BEGIN
    SELECT n INTO total_rows FROM @schema@.total FOR UPDATE;
    SELECT record INTO existing FROM @schema@.jobs WHERE id = p_id;
    IF FOUND THEN
        RETURN CASE WHEN existing = p_record THEN 1 ELSE 0 END;
    END IF;
    IF p_max_jobs > 0 AND total_rows - (
        SELECT count(*) FROM @schema@.jobs WHERE expires_at <= p_now
    ) >= p_max_jobs THEN
        RETURN -1;
    END IF;
    IF p_max_owner > 0 THEN
        SELECT n INTO owner_rows FROM @schema@.owners WHERE owner = p_owner;
        IF coalesce(owner_rows, 0) - (
            SELECT count(*) FROM @schema@.jobs WHERE owner = p_owner AND expires_at <= p_now
        ) >= p_max_owner THEN
            RETURN -2;
        END IF;
    END IF;
    INSERT INTO @schema@.jobs
        VALUES (p_id, p_owner, p_type, p_status, p_created, p_expires, p_lease, p_claim, p_record);
    UPDATE @schema@.total SET n = n + 1;
    INSERT INTO @schema@.owners VALUES (p_owner, 1)
        ON CONFLICT (owner) DO UPDATE SET n = @schema@.owners.n + 1;
    IF p_claim IS NOT NULL THEN  -- the claim now lives exactly as long as the job
        UPDATE @schema@.claims SET lapses_at = coalesce(p_expires, 'Infinity')
            WHERE claim = p_claim AND job_id = p_id;
    END IF;
    RETURN 1;
END
$$;

-- update_job: the compare-and-set. 1 written (or this very record is stored already), 0 the job
-- is missing, expired or in a status not in p_allowed. A terminal write notifies p_channel with
-- the id, delivered when the transaction commits.
CREATE FUNCTION @schema@.update_job(
    p_id text, p_status text, p_expires double precision, p_lease double precision,
    p_record text, p_now double precision, p_allowed text[], p_channel text
) RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    current_status text;
    current_expires double precision;
    current_claim text;
BEGIN
    SELECT status, expires_at, claim INTO current_status, current_expires, current_claim
        FROM @schema@.jobs WHERE id = p_id FOR UPDATE;
    IF NOT FOUND OR current_expires <= p_now THEN
        RETURN 0;
    END IF;
    IF current_status = p_status
        AND (SELECT record FROM @schema@.jobs WHERE id = p_id) = p_record THEN
        RETURN 1;  -- a retry whose first attempt landed
    END IF;
    IF NOT (current_status = ANY (p_allowed)) THEN
        RETURN 0;
    END IF;
    UPDATE @schema@.jobs
        SET status = p_status, expires_at = p_expires, lease_expires_at = p_lease, record = p_record
        WHERE id = p_id;
    IF p_expires IS NOT NULL AND current_claim IS NOT NULL THEN
        UPDATE @schema@.claims SET lapses_at = p_expires
            WHERE claim = current_claim AND job_id = p_id;
    END IF;
    IF p_status IN ('completed', 'failed') THEN
        PERFORM pg_notify(p_channel, p_id);
    END IF;
    RETURN 1;
END
$$;

-- delete_job: removes the job with its claim and notifies p_channel. 1 a live job was removed,
-- 0 it was missing or expired.
CREATE FUNCTION @schema@.delete_job(p_id text, p_now double precision, p_channel text)
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    gone_owner text;
    gone_expires double precision;
    gone_claim text;
BEGIN
    PERFORM n FROM @schema@.total FOR UPDATE;
    DELETE FROM @schema@.jobs WHERE id = p_id
        RETURNING owner, expires_at, claim INTO gone_owner, gone_expires, gone_claim;
    IF NOT FOUND THEN
        RETURN 0;
    END IF;
    UPDATE @schema@.total SET n = n - 1;
    UPDATE @schema@.owners SET n = n - 1 WHERE owner = gone_owner;
    IF gone_claim IS NOT NULL THEN
        DELETE FROM @schema@.claims WHERE claim = gone_claim AND job_id = p_id;
    END IF;
    PERFORM pg_notify(p_channel, p_id);
    RETURN CASE WHEN gone_expires <= p_now THEN 0 ELSE 1 END;
END
$$;

-- purge: deletes up to p_limit expired jobs (oldest expiry first) with their claims, the
-- counters of owners left with no rows, and claims that lapsed with no job; returns the jobs deleted.
CREATE FUNCTION @schema@.purge(p_now double precision, p_limit integer)
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    removed integer;
BEGIN
    PERFORM n FROM @schema@.total FOR UPDATE;
    WITH gone AS (
        DELETE FROM @schema@.jobs WHERE id IN (
            SELECT id FROM @schema@.jobs WHERE expires_at <= p_now ORDER BY expires_at LIMIT p_limit
        ) RETURNING owner, claim, id
    ), per_owner AS (
        SELECT owner, count(*) AS c FROM gone GROUP BY owner
    ), counted AS (
        UPDATE @schema@.owners o SET n = o.n - p.c FROM per_owner p WHERE o.owner = p.owner
    ), claims_gone AS (
        DELETE FROM @schema@.claims c USING gone g WHERE c.claim = g.claim AND c.job_id = g.id
    )
    SELECT count(*) INTO removed FROM gone;
    IF removed > 0 THEN
        UPDATE @schema@.total SET n = n - removed;
    END IF;
    DELETE FROM @schema@.owners WHERE n <= 0;
    DELETE FROM @schema@.claims c WHERE c.lapses_at <= p_now
        AND NOT EXISTS (SELECT 1 FROM @schema@.jobs j WHERE j.id = c.job_id);
    RETURN removed;
END
$$;

-- claim_key: take the idempotency claim p_claim for p_job unless a live claim holds it. Returns
-- no row when this call holds it now, else the holder's (job_id, fingerprint), unchanged.
CREATE FUNCTION @schema@.claim_key(
    p_claim text, p_job text, p_fingerprint text, p_lapses double precision, p_now double precision
) RETURNS TABLE (job_id text, fingerprint text) LANGUAGE plpgsql AS $$
DECLARE
    held @schema@.claims%ROWTYPE;
BEGIN
    LOOP
        SELECT * INTO held FROM @schema@.claims c WHERE c.claim = p_claim FOR UPDATE;
        IF NOT FOUND THEN
            INSERT INTO @schema@.claims VALUES (p_claim, p_job, p_fingerprint, p_lapses)
                ON CONFLICT (claim) DO NOTHING;
            IF FOUND THEN
                RETURN;
            END IF;
            CONTINUE;  -- another claim was inserted meanwhile: read it (a fresh snapshot)
        END IF;
        IF @schema@.claim_live(held.job_id, held.lapses_at, p_now) THEN
            RETURN QUERY SELECT held.job_id, held.fingerprint;
            RETURN;
        END IF;
        UPDATE @schema@.claims c SET job_id = p_job, fingerprint = p_fingerprint, lapses_at = p_lapses
            WHERE c.claim = p_claim;
        RETURN;
    END LOOP;
END
$$;

-- claim_live: a claim lives while its job lives, or until it lapses when the job does not exist.
CREATE FUNCTION @schema@.claim_live(p_job text, p_lapses double precision, p_now double precision)
RETURNS boolean LANGUAGE sql STABLE AS $$
    SELECT CASE
        WHEN EXISTS (SELECT 1 FROM @schema@.jobs j WHERE j.id = p_job)
        THEN NOT EXISTS (SELECT 1 FROM @schema@.jobs j WHERE j.id = p_job AND j.expires_at <= p_now)
        ELSE p_lapses > p_now
    END
$$;
