//! Which file names a rule limited to some paths could take, judged before
//! the rest of the path is known.
//!
//! A history scanned pack first reads trees without their paths. Keeping
//! every blob entry of every tree, for the few rules that look only at
//! `.env` files or `.netrc`, would make the tree table as large as the
//! history; keeping only the entries whose name could end a path such a
//! rule takes keeps it small. A path regex that is anchored at the end
//! (`…$`) is run backwards from the end of the name: when it dies before
//! reaching the name's start and the `/` before it, no path ending in that
//! name can match.

use regex_automata::hybrid::dfa::{Cache, DFA};
use regex_automata::hybrid::LazyStateID;
use regex_automata::util::start;
use regex_automata::{Anchored, MatchKind};
use regex_syntax::hir::Look;

/// Tests on tree entry names for a set of path regexes: one lazy DFA for
/// all of them, so that a name is read once, backwards, and most names
/// are dismissed at their last byte or two.
pub struct NameFilter {
    dfa: DFA,
    /// The bytes a name it may take can end with (most names are
    /// dismissed here, without the DFA).
    last: [bool; 256],
}

/// A thread's working memory for [`NameFilter::may_take`]: the lazy DFA's
/// cache, and its start state (valid until the cache is cleared).
pub struct NameCache {
    cache: Cache,
    start: Option<(LazyStateID, usize)>,
}

impl NameFilter {
    /// A filter for `paths`, or `None` when one of them cannot be judged
    /// by a name: not anchored at the end (`config` in `config/x`), or
    /// beyond what a lazy DFA runs.
    pub fn new<'a>(paths: impl IntoIterator<Item = &'a str>) -> Option<NameFilter> {
        let paths: Vec<&str> = paths.into_iter().collect();
        for p in &paths {
            let hir = regex_syntax::parse(p).ok()?;
            if !hir.properties().look_set_suffix().contains(Look::End) {
                return None;
            }
        }
        let dfa = DFA::builder()
            .configure(DFA::config().match_kind(MatchKind::All))
            .thompson(regex_automata::nfa::thompson::Config::new().reverse(true))
            .build_many(&paths)
            .ok()?;
        let mut last = [true; 256];
        let mut cache = dfa.create_cache();
        let config = start::Config::new().anchored(Anchored::Yes);
        if let Ok(start) = dfa.start_state(&mut cache, &config) {
            for (b, ok) in last.iter_mut().enumerate() {
                if let Ok(s) = dfa.next_state(&mut cache, start, b as u8) {
                    *ok = !s.is_dead();
                }
            }
        }
        Some(NameFilter { dfa, last })
    }

    pub fn cache(&self) -> NameCache {
        NameCache {
            cache: self.dfa.create_cache(),
            start: None,
        }
    }

    /// Whether some path ending in `/name` (or `name` alone) may match one
    /// of the regexes. Never false for a name that can.
    pub fn may_take(&self, name: &[u8], cache: &mut NameCache) -> bool {
        match name.last() {
            Some(&b) if !self.last[usize::from(b)] => false,
            _ => may_end_a_match(&self.dfa, cache, name),
        }
    }
}

/// Run the reversed regex from the end of a path that ends in `name`.
fn may_end_a_match(dfa: &DFA, names: &mut NameCache, name: &[u8]) -> bool {
    let cache = &mut names.cache;
    let mut sid = match names.start {
        Some((sid, cleared)) if cleared == cache.clear_count() => sid,
        _ => {
            let config = start::Config::new().anchored(Anchored::Yes);
            let Ok(sid) = dfa.start_state(cache, &config) else {
                return true;
            };
            names.start = Some((sid, cache.clear_count()));
            sid
        }
    };
    for &b in name.iter().rev() {
        sid = match dfa.next_state(cache, sid, b) {
            Ok(s) => s,
            Err(_) => return true,
        };
        if sid.is_match() {
            return true;
        }
        if sid.is_dead() || sid.is_quit() {
            return !sid.is_dead();
        }
    }
    // The name is the whole path (a file at the root)...
    if dfa
        .next_eoi_state(cache, sid)
        .map_or(true, |s| s.is_match())
    {
        return true;
    }
    // ...or a directory comes before it.
    match dfa.next_state(cache, sid, b'/') {
        Ok(s) => !s.is_dead(),
        Err(_) => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn takes(paths: &[&str], name: &str) -> bool {
        let f = NameFilter::new(paths.iter().copied()).unwrap();
        let mut c = f.cache();
        f.may_take(name.as_bytes(), &mut c)
    }

    #[test]
    fn names_that_can_end_a_matching_path_pass() {
        let netrc = [r"(?i)(?:^|/)[._]netrc$"];
        assert!(takes(&netrc, ".netrc"));
        assert!(takes(&netrc, "_NETRC"));
        assert!(!takes(&netrc, "netrc.md"));
        assert!(!takes(&netrc, "x.netrc"));
        let master = [r"(?:^|/)config/(?:master|credentials/[\w-]+)\.key$"];
        assert!(takes(&master, "master.key"), "under some config/");
        assert!(
            takes(&master, "production.key"),
            "under config/credentials/"
        );
        assert!(!takes(&master, "master.pem"));
        let sql = [r"(?i)\.sql$"];
        assert!(takes(&sql, "dump.SQL"));
        assert!(!takes(&sql, "dump.sql.gz"));
        let root = [r"^secrets\.env$"];
        assert!(takes(&root, "secrets.env"));
        assert!(!takes(&root, "other.env"));
        let kube = [r"(?i)(?:^|/)(?:kubeconfig[\w.-]*|\.kube/config|[\w.-]+\.kubeconfig)$"];
        assert!(takes(&kube, "config"), "under .kube/");
        assert!(takes(&kube, "kubeconfig-prod"));
        assert!(!takes(&kube, "settings.py"));
    }

    #[test]
    fn regexes_a_name_cannot_judge_give_no_filter() {
        assert!(NameFilter::new([r"(?:^|/)secrets/"]).is_none());
        assert!(NameFilter::new([r"\.env$", r"config"]).is_none());
        assert!(NameFilter::new([r"(?i)\.tfvars$"]).is_some());
    }
}
