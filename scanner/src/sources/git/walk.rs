//! Which commits a history scan covers: the tips to start from and to hide
//! (every ref, one branch, a range), walked by gix's revision walk or, for
//! a whole history, over commits decoded straight from the packs.

use gix::hashtable::{HashMap, HashSet};
use gix::objs::{Find, Kind};
use gix::ObjectId;

use super::plumbing::commit::{self, CommitNode};
use super::plumbing::pack::Layout;
use super::{GitError, HistoryOptions};
use crate::sources::Event;

/// The commit `spec` names (annotated tags are peeled).
pub(super) fn resolve(repo: &gix::Repository, spec: &str) -> Result<ObjectId, GitError> {
    repo.rev_parse_single(format!("{spec}^{{commit}}").as_str())
        .map(|id| id.detach())
        .map_err(|e| GitError::Revision {
            spec: spec.to_string(),
            message: e.to_string(),
        })
}

/// Where a walk starts and what it leaves out.
#[derive(Clone)]
pub(super) struct Tips {
    pub tips: Vec<ObjectId>,
    pub hidden: Vec<ObjectId>,
}

/// Tips to walk and tips to hide, from the options.
pub(super) fn tips(repo: &gix::Repository, opts: &HistoryOptions) -> Result<Tips, GitError> {
    let mut hidden = Vec::new();
    if let Some(since) = &opts.since {
        hidden.push(resolve(repo, since)?);
    }
    if let Some(range) = &opts.range {
        let Some((a, b)) = range.split_once("..") else {
            return Err(GitError::Revision {
                spec: range.clone(),
                message: "expected A..B".into(),
            });
        };
        hidden.push(resolve(repo, a)?);
        let b = if b.is_empty() { "HEAD" } else { b };
        return Ok(Tips {
            tips: vec![resolve(repo, b)?],
            hidden,
        });
    }
    if let Some(branch) = &opts.branch {
        return Ok(Tips {
            tips: vec![resolve(repo, branch)?],
            hidden,
        });
    }
    if opts.since.is_some() && !opts.all_refs {
        return Ok(Tips {
            tips: vec![resolve(repo, "HEAD")?],
            hidden,
        });
    }
    let mut tips = Vec::new();
    let refs = repo
        .references()
        .map_err(|e| GitError::References(e.to_string()))?;
    for r in refs
        .all()
        .map_err(|e| GitError::References(e.to_string()))?
    {
        let mut r = r.map_err(|e| GitError::References(e.to_string()))?;
        let name = r.name().as_bstr().to_string();
        let unreadable = |message: String| GitError::Unreadable {
            what: format!("ref {name}"),
            message,
        };
        // Peeling reads every tag on the way: a damaged object is an
        // error, never a ref quietly left out.
        let id = r
            .peel_to_id()
            .map_err(|e| unreadable(e.to_string()))?
            .detach();
        let header = repo
            .find_header(id)
            .map_err(|e| unreadable(format!("object {id}: {e}")))?;
        // Refs to non-commits (a tag of a blob) are rare; history is commits.
        if header.kind() == gix::objs::Kind::Commit {
            tips.push(id);
        }
    }
    if tips.is_empty() {
        // A detached HEAD with no refs still has history.
        if let Ok(id) = repo.head_id() {
            tips.push(id.detach());
        }
    }
    tips.sort();
    tips.dedup();
    Ok(Tips { tips, hidden })
}

/// The commits a walk reached, oldest first, and how many it could not
/// read (each reported as an error event).
#[derive(Default)]
pub(super) struct Walked {
    pub commits: Vec<CommitNode>,
    pub unreadable: usize,
}

/// The commits reachable from the tips and not from the hidden ones, oldest
/// first (ties by id, so that the order does not depend on the walk).
pub(super) fn rev_walk(
    repo: &gix::Repository,
    Tips { tips, hidden }: Tips,
    on_event: &mut impl FnMut(Event),
) -> Result<Walked, GitError> {
    let mut walked = Walked::default();
    if tips.is_empty() {
        return Ok(walked);
    }
    let walk = repo
        .rev_walk(tips)
        .with_hidden(hidden)
        .all()
        .map_err(|e| GitError::Walk(e.to_string()))?;
    for info in walk {
        let info = match info {
            Ok(i) => i,
            Err(e) => {
                on_event(Event::error("", format!("history walk stopped early: {e}")));
                walked.unreadable += 1;
                break;
            }
        };
        let node = info.object().ok().and_then(|c| {
            Some(CommitNode {
                id: info.id,
                tree: c.tree_id().ok()?.detach(),
                parents: info.parent_ids.iter().copied().collect(),
                time: c.time().map(|t| t.seconds).unwrap_or(0),
            })
        });
        match node {
            Some(n) => walked.commits.push(n),
            None => {
                on_event(Event::error(
                    format!("commit {}", info.id),
                    "cannot read commit",
                ));
                walked.unreadable += 1;
            }
        }
    }
    // Oldest first: the first commit to introduce a blob at a path is the
    // one a finding names.
    walked.commits.sort_by_key(|c| (c.time, c.id));
    Ok(walked)
}

/// The commits reachable from `tips`, oldest first (ties by id), decoded
/// from the packs in one pass (loose ones are read one by one) and walked
/// in memory. Commits listed as shallow have their parents cut, as git
/// does.
pub(super) fn from_packs(
    pool: &rayon::ThreadPool,
    repo: &gix::Repository,
    layouts: &[Layout],
    tips: &[ObjectId],
    on_event: &mut impl FnMut(Event),
) -> Result<Walked, GitError> {
    let mut stored: HashMap<ObjectId, CommitNode> = HashMap::default();
    for layout in layouts {
        let decoded = layout.traverse(pool, Kind::Commit, Vec::new, |found, c| {
            found.extend(commit::parse(c.id, c.data));
        })?;
        for n in decoded.states.into_iter().flatten() {
            stored.entry(n.id).or_insert(n);
        }
    }
    let shallow: HashSet<ObjectId> = repo
        .shallow_commits()
        .ok()
        .flatten()
        .map(|c| c.iter().copied().collect())
        .unwrap_or_default();
    let mut seen: HashSet<ObjectId> = HashSet::default();
    let mut stack = tips.to_vec();
    let mut walked = Walked::default();
    let mut buf = Vec::new();
    while let Some(id) = stack.pop() {
        if !seen.insert(id) {
            continue;
        }
        // Not in a pack (loose, or undecodable there): read it alone.
        let node = stored
            .remove(&id)
            .or_else(|| match repo.objects.try_find(&id, &mut buf) {
                Ok(Some(d)) if d.kind == Kind::Commit => commit::parse(&id, d.data),
                _ => None,
            });
        let Some(mut node) = node else {
            on_event(Event::error(format!("commit {id}"), "cannot read commit"));
            walked.unreadable += 1;
            continue;
        };
        if shallow.contains(&id) {
            node.parents.clear();
        }
        stack.extend(node.parents.iter().copied());
        walked.commits.push(node);
    }
    walked.commits.sort_by_key(|c| (c.time, c.id));
    Ok(walked)
}
