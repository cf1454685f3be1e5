//! Commits as a history walk needs them: tree, parents and committer time.

use gix::objs::commit::ref_iter::Token;
use gix::objs::CommitRefIter;
use gix::ObjectId;

/// A commit of the walk.
pub(crate) struct CommitNode {
    pub id: ObjectId,
    pub tree: ObjectId,
    pub parents: Vec<ObjectId>,
    /// Committer time, seconds since the epoch.
    pub time: i64,
}

/// Tree, parents and committer time from a commit's bytes, with gix's
/// commit tokenizer; it stops at the committer line, before the message.
/// `None` when the bytes are not a commit.
pub(crate) fn parse(id: &gix::oid, data: &[u8]) -> Option<CommitNode> {
    let mut tree = None;
    let mut parents = Vec::new();
    for token in CommitRefIter::from_bytes(data, id.kind()) {
        match token.ok()? {
            Token::Tree { id } => tree = Some(id),
            Token::Parent { id } => parents.push(id),
            Token::Author { .. } => {}
            Token::Committer { signature } => {
                return Some(CommitNode {
                    id: id.to_owned(),
                    tree: tree?,
                    parents,
                    time: signature.seconds(),
                })
            }
            _ => break,
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commits_give_tree_parents_and_committer_time() {
        let id = ObjectId::from_hex(b"1111111111111111111111111111111111111111").unwrap();
        let data = b"tree 2222222222222222222222222222222222222222\n\
            parent 3333333333333333333333333333333333333333\n\
            parent 4444444444444444444444444444444444444444\n\
            author A U Thor <a@example.org> 1000 +0000\n\
            committer C O Mitter <c@example.org> 1700000000 -0130\n\
            \n\
            parent 5555555555555555555555555555555555555555 in the message\n";
        let c = parse(&id, data).unwrap();
        assert_eq!(c.tree.to_string(), "2".repeat(40));
        let parents: Vec<String> = c.parents.iter().map(|p| p.to_string()).collect();
        assert_eq!(parents, ["3".repeat(40), "4".repeat(40)]);
        assert_eq!(c.time, 1_700_000_000);
        assert!(parse(&id, b"not a commit").is_none());
    }
}
