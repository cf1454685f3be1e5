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
use regex_automata::util::start;
use regex_automata::{Anchored, MatchKind};
use regex_syntax::hir::Look;

/// Tests on tree entry names for a set of path regexes.
pub struct NameFilter {
    dfas: Vec<DFA>,
}

/// A thread's working memory for [`NameFilter::may_take`].
pub struct NameCache(Vec<Cache>);

impl NameFilter {
    /// A filter for `paths`, or `None` when one of them cannot be judged
    /// by a name: not anchored at the end (`config` in `config/x`), or
    /// beyond what a lazy DFA runs.
    pub fn new<'a>(paths: impl IntoIterator<Item = &'a str>) -> Option<NameFilter> {
        let mut dfas = Vec::new();
        for p in paths {
            let hir = regex_syntax::parse(p).ok()?;
            if !hir.properties().look_set_suffix().contains(Look::End) {
                return None;
            }
            let dfa = DFA::builder()
                .configure(DFA::config().match_kind(MatchKind::All))
                .thompson(regex_automata::nfa::thompson::Config::new().reverse(true))
                .build(p)
                .ok()?;
            dfas.push(dfa);
        }
        Some(NameFilter { dfas })
    }

    pub fn cache(&self) -> NameCache {
        NameCache(self.dfas.iter().map(DFA::create_cache).collect())
    }

    /// Whether some path ending in `/name` (or `name` alone) may match one
    /// of the regexes. Never false for a name that can.
    pub fn may_take(&self, name: &[u8], cache: &mut NameCache) -> bool {
        self.dfas
            .iter()
            .zip(cache.0.iter_mut())
            .any(|(dfa, c)| may_end_a_match(dfa, c, name))
    }
}

/// Run the reversed regex from the end of a path that ends in `name`.
fn may_end_a_match(dfa: &DFA, cache: &mut Cache, name: &[u8]) -> bool {
    let config = start::Config::new().anchored(Anchored::Yes);
    let Ok(mut sid) = dfa.start_state(cache, &config) else {
        return true;
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
