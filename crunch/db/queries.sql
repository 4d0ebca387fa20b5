-- The statements crunch writes by hand: those every dataset runs (its claim, its
-- statuses, the token of each call), where building an ORM query costs about ten times
-- running it, and two of a migration. Registration's bulk writes are in crunch/db/bulk.py.
-- Everything else goes through the ORM.
--
-- Each statement starts with "-- name --" and a comment saying what it does; crunch.db
-- loads it by that name (crunch.db.queries). Parameters are named: %(name)s. A few parts
-- vary with the call and are written {slot}: the user model's table and columns (filled
-- once, from the model, as AUTH_USER_MODEL may be swapped), a condition chosen among the
-- fragments below, or a list of placeholders. On a database without row locks (SQLite,
-- which takes its write lock when a transaction starts) the loader drops FOR UPDATE; on
-- SQLite, whose RETURNING names the updated table's columns only and takes no "table.*",
-- it writes RETURNING "table".* as RETURNING *.
-- tests/server/test_sql_statements.py compares each statement with its ORM equivalent.

-- claim_next --
-- Claim the next ready dataset (pending, past its retry delay; highest priority, then
-- oldest) in one statement: the row, as it is now. {queue} narrows the datasets to one
-- project or to unpaused projects, {allowed} to those the caller may process, {fits} to
-- those whose needs the claim's memory and time meet (fits_claim). PostgreSQL
-- skips the rows other claims are taking, so no two claims get one row.
UPDATE "crunch_dataset" SET
    claim_key = %(claim_key)s, lease_seconds = %(lease_seconds)s, state = %(state)s,
    stage = %(stage)s, claim_id = %(claim_id)s, claim_holder = %(claim_holder)s,
    claim_user_id = %(claim_user_id)s, claimed = %(claimed)s, heartbeat = %(heartbeat)s,
    lease_expires = %(lease_expires)s, not_before = %(not_before)s,
    attempts = attempts + 1
WHERE id = (
    SELECT id FROM "crunch_dataset"
    WHERE state = %(ready)s AND (not_before IS NULL OR not_before <= %(now)s)
      AND {queue} AND {allowed} AND {fits}
    ORDER BY priority DESC, id
    LIMIT 1
    FOR UPDATE OF "crunch_dataset" SKIP LOCKED
)
RETURNING *

-- claim_many --
-- Claim up to %(count)s ready datasets in one statement, as claim_next claims one: the
-- n-th of them in queue order (from 1) gets the claim id and key of the row of {claims}
-- whose n it is, (%(n_0)s, %(claim_id_0)s, %(claim_key_0)s), ... The rows, as they are
-- now, in no particular order.
WITH crunch_c (n, claim_id, claim_key) AS (VALUES {claims})
UPDATE "crunch_dataset" SET
    claim_key = crunch_c.claim_key, lease_seconds = %(lease_seconds)s, state = %(state)s,
    stage = %(stage)s, claim_id = crunch_c.claim_id, claim_holder = %(claim_holder)s,
    claim_user_id = %(claim_user_id)s, claimed = %(claimed)s, heartbeat = %(heartbeat)s,
    lease_expires = %(lease_expires)s, not_before = %(not_before)s,
    attempts = attempts + 1
FROM (
    SELECT crunch_p.id, row_number() OVER (ORDER BY crunch_p.priority DESC, crunch_p.id) AS n
    FROM (
        SELECT id, priority FROM "crunch_dataset"
        WHERE state = %(ready)s AND (not_before IS NULL OR not_before <= %(now)s)
          AND {queue} AND {allowed} AND {fits}
        ORDER BY priority DESC, id
        LIMIT %(count)s
        FOR UPDATE OF "crunch_dataset" SKIP LOCKED
    ) crunch_p
) crunch_n
INNER JOIN crunch_c ON crunch_c.n = crunch_n.n
WHERE "crunch_dataset".id = crunch_n.id
RETURNING "crunch_dataset".*

-- fits_claim --
-- The claim queue's datasets whose needs the claim meets: no memory needed, or at most the
-- %(memory)s bytes it announced; no time needed, or at most its %(seconds)s seconds. A claim
-- that announces nothing (NULL) gets only datasets that need nothing.
("crunch_dataset".needs_memory IS NULL OR "crunch_dataset".needs_memory <= %(memory)s)
AND ("crunch_dataset".needs_seconds IS NULL OR "crunch_dataset".needs_seconds <= %(seconds)s)

-- queue_anywhere --
-- The claim queue's datasets when no project is named: those of unpaused projects.
"crunch_dataset".project_id NOT IN (SELECT id FROM "crunch_project" WHERE paused)

-- queue_of_project --
-- The claim queue's datasets of one unpaused project, known by its id.
"crunch_dataset".project_id = %(project_id)s

-- queue_of_slug --
-- The claim queue's datasets of one project, known by its slug, unless it is paused.
"crunch_dataset".project_id = (
    SELECT id FROM "crunch_project" WHERE slug = %(project_slug)s AND NOT paused
)

-- may_process --
-- Whether the user %(process_user)s may process the dataset's project, as
-- crunch.access.grants says: a role among {roles} (%(process_role_0)s, ...) of the user or
-- of one of their groups, on the project or on every project (no project).
EXISTS (
    SELECT 1 FROM "crunch_projectrole" crunch_r
    WHERE crunch_r.role IN ({roles})
      AND (crunch_r.project_id = "crunch_dataset".project_id OR crunch_r.project_id IS NULL)
      AND (crunch_r.user_id = %(process_user)s OR crunch_r.group_id IN (
          SELECT crunch_g.{user_groups_group} FROM {user_groups} crunch_g
          WHERE crunch_g.{user_groups_user} = %(process_user)s
      ))
)

-- anyone --
-- No condition: the caller may process every project.
1 = 1

-- no_one --
-- The caller may process no project (not signed in).
1 = 0

-- project --
-- A project by its id.
SELECT * FROM "crunch_project" WHERE id = %(id)s

-- projects_by_id --
-- The projects of the ids {ids} (%(id_0)s, ...): those of a batch of claims.
SELECT * FROM "crunch_project" WHERE id IN ({ids})

-- dataset_with_project --
-- A dataset by its id, its project joined: a claim read back.
SELECT "crunch_dataset".*, "crunch_project".*
FROM "crunch_dataset"
INNER JOIN "crunch_project" ON "crunch_dataset".project_id = "crunch_project".id
WHERE "crunch_dataset".id = %(id)s

-- lock_dataset --
-- Lock a dataset (by {dataset}: its id or its slug) for a status, its project joined,
-- with {seen}: the id of a status the user already recorded on it with one of the
-- status keys (a retried post), and {allowed}: whether the user may report on it.
SELECT "crunch_dataset".*, "crunch_project".*, {seen}, {allowed}
FROM "crunch_dataset"
INNER JOIN "crunch_project" ON "crunch_dataset".project_id = "crunch_project".id
WHERE {dataset}
FOR UPDATE OF "crunch_dataset"

-- lock_datasets --
-- Lock the datasets of a batch of statuses, known by their ids {ids} and their slugs
-- {slugs} (lists of placeholders; NULL when none), their projects joined, each with
-- {seen} and {allowed} as lock_dataset's. In the order of their ids, so that two batches
-- lock their rows alike and never each wait for the other.
SELECT "crunch_dataset".*, "crunch_project".*, {seen}, {allowed}
FROM "crunch_dataset"
INNER JOIN "crunch_project" ON "crunch_dataset".project_id = "crunch_project".id
WHERE "crunch_dataset".id IN ({ids}) OR "crunch_dataset".slug IN ({slugs})
ORDER BY "crunch_dataset".id
FOR UPDATE OF "crunch_dataset"

-- dataset_of_id --
-- lock_dataset's dataset, by id.
"crunch_dataset".id = %(dataset)s

-- dataset_of_slug --
-- lock_dataset's dataset, by slug.
"crunch_dataset".slug = %(dataset)s

-- seen_by_user --
-- lock_dataset's earlier status of the user with one of the keys {keys}.
(SELECT "crunch_status".id FROM "crunch_status"
 WHERE "crunch_status".dataset_id = "crunch_dataset".id
   AND "crunch_status".user_id = %(seen_user)s AND "crunch_status"."key" IN ({keys})
 LIMIT 1)

-- seen_anonymous --
-- lock_dataset's earlier status without a user with one of the keys {keys}.
(SELECT "crunch_status".id FROM "crunch_status"
 WHERE "crunch_status".dataset_id = "crunch_dataset".id
   AND "crunch_status".user_id IS NULL AND "crunch_status"."key" IN ({keys})
 LIMIT 1)

-- unseen --
-- lock_dataset without status keys: nothing to look up.
NULL

-- advance_dataset --
-- Save what a status moves on its dataset (crunch.db.statements.ADVANCED).
UPDATE "crunch_dataset" SET
    stage = %(stage)s, heartbeat = %(heartbeat)s, state = %(state)s,
    not_before = %(not_before)s, note = %(note)s, finished = %(finished)s,
    lease_expires = %(lease_expires)s, claim_id = %(claim_id)s, claim_key = %(claim_key)s,
    lease_seconds = %(lease_seconds)s, claim_holder = %(claim_holder)s,
    claim_user_id = %(claim_user_id)s, claimed = %(claimed)s, attempts = %(attempts)s,
    last_reason = %(last_reason)s, last_reason_detail = %(last_reason_detail)s,
    needs_memory = %(needs_memory)s, needs_seconds = %(needs_seconds)s
WHERE id = %(id)s

-- advance_datasets --
-- Save what a batch of statuses moved on its datasets, as advance_dataset saves one: {rows}
-- holds one tuple per dataset, its id and then its values in this column order (on
-- PostgreSQL each cast to its column's type, as a column of NULLs would be text).
WITH crunch_v (
    id, stage, heartbeat, state, not_before, note, finished, lease_expires, claim_id,
    claim_key, lease_seconds, claim_holder, claim_user_id, claimed, attempts, last_reason,
    last_reason_detail, needs_memory, needs_seconds
) AS (VALUES {rows})
UPDATE "crunch_dataset" SET
    stage = crunch_v.stage, heartbeat = crunch_v.heartbeat, state = crunch_v.state,
    not_before = crunch_v.not_before, note = crunch_v.note, finished = crunch_v.finished,
    lease_expires = crunch_v.lease_expires, claim_id = crunch_v.claim_id,
    claim_key = crunch_v.claim_key, lease_seconds = crunch_v.lease_seconds,
    claim_holder = crunch_v.claim_holder, claim_user_id = crunch_v.claim_user_id,
    claimed = crunch_v.claimed, attempts = crunch_v.attempts,
    last_reason = crunch_v.last_reason, last_reason_detail = crunch_v.last_reason_detail,
    needs_memory = crunch_v.needs_memory, needs_seconds = crunch_v.needs_seconds
FROM crunch_v
WHERE "crunch_dataset".id = crunch_v.id

-- renew_claims --
-- Renew the claims {claims} (%(claim_0)s, ...) that the user %(user)s holds on running
-- datasets (%(running)s) of projects {allowed} lets them process: a heartbeat at %(now)s,
-- the lease until %(lease_expires)s. The claims renewed; the others are lost. The rows are
-- locked in the order of their ids, as lock_datasets locks them: a loop's renewal and its
-- batch of statuses never each wait for the other.
UPDATE "crunch_dataset" SET heartbeat = %(now)s, lease_expires = %(lease_expires)s
WHERE id IN (
  SELECT id FROM "crunch_dataset"
  WHERE claim_id IN ({claims}) AND state = %(running)s AND claim_user_id = %(user)s
    AND {allowed}
  ORDER BY id
  FOR UPDATE
)
RETURNING claim_id

-- token_with_user --
-- The API token of a key's SHA-256 digest, with its user: every API call runs it.
SELECT "crunch_accesstoken".*, {user_table}.*
FROM "crunch_accesstoken"
INNER JOIN {user_table} ON "crunch_accesstoken".user_id = {user_table}.{user_pk}
WHERE "crunch_accesstoken".digest = %(digest)s

-- insert_statuses --
-- Record statuses of one or more runs in one statement; {rows} holds one tuple per
-- status, (%(v0_0)s, %(v0_1)s, ...) for the first, its values in this column order.
-- Their ids, in the same order.
INSERT INTO "crunch_status" (
    dataset_id, stage, state, note, claim_id, "key", user_id, created, workflow_sha256,
    agent_user, version, revision, system, system_release, system_version, machine,
    hostname, ip_address, mac_address, slurm_job_id, slurm_array_task_id,
    memory_total, memory_free, disk_total, disk_free, image_digest, slot, reason,
    reason_detail, memory, seconds
)
VALUES {rows}
RETURNING id

-- authtoken_keys --
-- Migration 0008: the keys of DRF's authtoken app (rest_framework.authtoken, which crunch
-- read before it had tokens of its own), to become crunch tokens. Its model may not be
-- installed, hence SQL.
SELECT "key", user_id, created FROM "authtoken_token"

-- delete_authtoken_keys --
-- Migration 0008: delete DRF's authtoken rows once their keys are crunch tokens.
DELETE FROM "authtoken_token"

-- create_result_statistics --
-- Migration 0015 (PostgreSQL): the frequency of each (key, value) pair of a text or
-- boolean result. The column statistics mix every key's values, so site=north looked 10
-- times rarer than it is, and a page sorted by score and filtered by site was planned
-- as a join of every score (60 ms at 100,000 datasets) rather than a walk down the score
-- index that stops at the page's end (2 ms).
CREATE STATISTICS IF NOT EXISTS crunch_result_key_text (mcv) ON key_id, "text" FROM crunch_result;
CREATE STATISTICS IF NOT EXISTS crunch_result_key_flag (mcv) ON key_id, flag FROM crunch_result;
ANALYZE crunch_result

-- drop_result_statistics --
-- Migration 0015, reversed.
DROP STATISTICS IF EXISTS crunch_result_key_text;
DROP STATISTICS IF EXISTS crunch_result_key_flag
