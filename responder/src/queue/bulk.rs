//! A batch of deliveries on PostgreSQL in a handful of array statements,
//! whatever its size: each row-by-row statement is a round trip, and on a
//! busy host the round trips, not the rows, are the cost.
//!
//! The semantics are those of the one-by-one path: a delivery id seen
//! before (in an earlier batch, at another replica, or earlier in this
//! batch) is a duplicate; a delivery of an alert with a pending job is
//! recorded against that job; otherwise it makes a job. Rows are written
//! in (repository, alert, delivery) order, so that two replicas' batches
//! over the same alerts wait for each other instead of deadlocking.

use std::collections::HashMap;

use super::db::Pg;
use super::{Enqueued, NewJob, QueueError};

pub fn enqueue(pg: &mut Pg, jobs: &[NewJob], now: i64) -> Result<Vec<Enqueued>, QueueError> {
    let mut order: Vec<usize> = (0..jobs.len()).collect();
    order.sort_by_key(|&i| (jobs[i].repo, jobs[i].alert_number, jobs[i].delivery));
    let mut outcomes: Vec<Option<Enqueued>> = vec![None; jobs.len()];

    // 1. Claim the delivery ids; the first of a repeated id in the batch
    //    stands for the others.
    let mut first_of: HashMap<&str, usize> = HashMap::new();
    let mut repeats: Vec<(usize, usize)> = Vec::new();
    for &i in &order {
        if let Some(d) = jobs[i].delivery {
            match first_of.get(d) {
                Some(&first) => repeats.push((i, first)),
                None => {
                    first_of.insert(d, i);
                }
            }
        }
    }
    let ids: Vec<&str> = order
        .iter()
        .filter_map(|&i| jobs[i].delivery.filter(|d| first_of[d] == i))
        .collect();
    let fresh: std::collections::HashSet<String> = if ids.is_empty() {
        Default::default()
    } else {
        pg.query(
            "INSERT INTO deliveries (id, job_id, received_at) \
             SELECT d, NULL, $2 FROM UNNEST($1::text[]) AS d ON CONFLICT (id) DO NOTHING \
             RETURNING id",
            &[&ids, &now],
        )?
        .iter()
        .map(|r| r.try_get(0))
        .collect::<Result<_, _>>()?
    };
    let seen: Vec<&str> = ids
        .iter()
        .copied()
        .filter(|d| !fresh.contains(*d))
        .collect();
    if !seen.is_empty() {
        let known: HashMap<String, Option<i64>> = pg
            .query(
                "SELECT id, job_id FROM deliveries WHERE id = ANY($1)",
                &[&seen],
            )?
            .iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
            .collect::<Result<_, postgres::Error>>()?;
        for d in seen {
            outcomes[first_of[d]] =
                Some(Enqueued::DuplicateDelivery(known.get(d).copied().flatten()));
        }
    }

    // 2. A job for each candidate whose alert has none pending.
    let repeated: std::collections::HashSet<usize> = repeats.iter().map(|(r, _)| *r).collect();
    let candidates: Vec<usize> = order
        .iter()
        .copied()
        .filter(|&i| outcomes[i].is_none() && !repeated.contains(&i))
        .collect();
    if !candidates.is_empty() {
        let col = |f: &dyn Fn(&NewJob) -> String| -> Vec<String> {
            candidates.iter().map(|&i| f(&jobs[i])).collect()
        };
        let repos = col(&|j| j.repo.to_string());
        let numbers: Vec<i64> = candidates
            .iter()
            .map(|&i| jobs[i].alert_number as i64)
            .collect();
        let sources = col(&|j| j.source.to_string());
        let deliveries: Vec<Option<&str>> = candidates.iter().map(|&i| jobs[i].delivery).collect();
        let payloads = col(&|j| j.payload.to_string());
        let steps = col(&|j| j.step.to_string());
        let created: HashMap<(String, i64), i64> = pg
            .query(
                "INSERT INTO jobs (repo, alert_number, source, delivery, payload, state, step, \
                 next_run_at, created_at, updated_at) \
                 SELECT r, n, s, d, p, 'queued', st, $7, $7, $7 \
                 FROM UNNEST($1::text[], $2::bigint[], $3::text[], $4::text[], $5::text[], \
                             $6::text[]) AS u(r, n, s, d, p, st) \
                 ON CONFLICT (repo, alert_number) WHERE state IN ('queued', 'running') \
                 DO NOTHING RETURNING id, repo, alert_number",
                &[
                    &repos,
                    &numbers,
                    &sources,
                    &deliveries,
                    &payloads,
                    &steps,
                    &now,
                ],
            )?
            .iter()
            .map(|r| Ok(((r.try_get(1)?, r.try_get(2)?), r.try_get(0)?)))
            .collect::<Result<_, postgres::Error>>()?;
        let mut pending: HashMap<(String, i64), i64> = HashMap::new();
        if created.len() < candidates.len() {
            pending = pg
                .query(
                    "SELECT j.id, j.repo, j.alert_number FROM jobs j \
                     JOIN UNNEST($1::text[], $2::bigint[]) AS u(r, n) \
                       ON j.repo = u.r AND j.alert_number = u.n \
                     WHERE j.state IN ('queued', 'running')",
                    &[&repos, &numbers],
                )?
                .iter()
                .map(|r| Ok(((r.try_get(1)?, r.try_get(2)?), r.try_get(0)?)))
                .collect::<Result<_, postgres::Error>>()?;
        }
        let mut taken = std::collections::HashSet::new();
        for &i in &candidates {
            let key = (jobs[i].repo.to_string(), jobs[i].alert_number as i64);
            outcomes[i] = Some(match created.get(&key) {
                // The first candidate of the alert made the job.
                Some(&id) if taken.insert(key.clone()) => Enqueued::Created(id),
                Some(&id) => Enqueued::AlreadyPending(id),
                None => match pending.get(&key) {
                    Some(&id) => Enqueued::AlreadyPending(id),
                    None => {
                        return Err(QueueError::Worker(
                            "the pending job of an alert finished during intake; retry".into(),
                        ))
                    }
                },
            });
        }

        // 3. Each fresh delivery points at its job.
        let (ids, job_ids): (Vec<&str>, Vec<i64>) = candidates
            .iter()
            .filter_map(|&i| {
                let job = match outcomes[i]? {
                    Enqueued::Created(id) | Enqueued::AlreadyPending(id) => id,
                    Enqueued::DuplicateDelivery(_) => return None,
                };
                Some((jobs[i].delivery?, job))
            })
            .unzip();
        if !ids.is_empty() {
            pg.query(
                "UPDATE deliveries SET job_id = u.j FROM UNNEST($1::text[], $2::bigint[]) AS u(d, j) \
                 WHERE deliveries.id = u.d",
                &[&ids, &job_ids],
            )?;
        }
    }

    // 4. Repeats within the batch answer as duplicates of their first.
    for (i, first) in repeats {
        let job = match outcomes[first] {
            Some(Enqueued::Created(id) | Enqueued::AlreadyPending(id)) => Some(id),
            Some(Enqueued::DuplicateDelivery(job)) => job,
            None => None,
        };
        outcomes[i] = Some(Enqueued::DuplicateDelivery(job));
    }
    Ok(outcomes
        .into_iter()
        .map(|o| o.unwrap_or(Enqueued::DuplicateDelivery(None)))
        .collect())
}
