//! Named groups of numbers alert mail can be addressed to: the account's
//! `groups` table and its `groups_file` (a TOML file of top-level
//! `name = [numbers]`), checked together.

use std::collections::BTreeMap;
use std::path::Path;

use super::address;

/// Groups by name (lowercased, as local parts are compared), each with its
/// numbers as written (every one valid for the account's region).
pub type Groups = BTreeMap<String, Vec<String>>;

/// Checks `groups` for `region`: names that cannot be taken for numbers,
/// unique without case, each with valid numbers. The error says which.
pub fn check(groups: &BTreeMap<String, Vec<String>>, region: &str) -> Result<Groups, String> {
    let mut checked = Groups::new();
    for (name, numbers) in groups {
        check_name(name)?;
        if numbers.is_empty() {
            return Err(format!("group `{name}` has no numbers"));
        }
        for written in numbers {
            if let Err(reason) = address::number(written, region) {
                return Err(format!(
                    "group `{name}`: `{written}` is not a valid phone number for region {region}: {reason}"
                ));
            }
        }
        if checked
            .insert(name.to_ascii_lowercase(), numbers.clone())
            .is_some()
        {
            return Err(format!(
                "group `{name}` is given twice (names are compared without case)"
            ));
        }
    }
    Ok(checked)
}

/// A group name is a local part that cannot be read as a number: ASCII
/// letters, digits, `.`, `_`, `-`, with at least one letter.
fn check_name(name: &str) -> Result<(), String> {
    let allowed = name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if !allowed || !name.bytes().any(|b| b.is_ascii_alphabetic()) {
        return Err(format!(
            "group name `{}` must be letters, digits, `.`, `_` or `-`, with at least one letter",
            name.escape_debug()
        ));
    }
    Ok(())
}

/// The groups of `file` (a TOML file of top-level `name = [numbers]`),
/// checked for `region`. The error names the file.
pub fn read_file(file: &Path, region: &str) -> Result<Groups, String> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| format!("cannot read {}: {e}", file.display()))?;
    let raw: BTreeMap<String, Vec<String>> = toml::from_str(&text)
        .map_err(|e| format!("{}: {}", file.display(), e.to_string().trim_end()))?;
    check(&raw, region).map_err(|e| format!("{}: {e}", file.display()))
}

/// The account's groups: its `groups` table and, when given, its
/// `groups_file`; a name in both is an error.
pub fn load(
    inline: &BTreeMap<String, Vec<String>>,
    file: Option<&Path>,
    region: &str,
) -> Result<Groups, String> {
    let mut groups = check(inline, region)?;
    if let Some(file) = file {
        for (name, numbers) in read_file(file, region)? {
            if groups.contains_key(&name) {
                return Err(format!(
                    "group `{name}` is both in groups and in {}",
                    file.display()
                ));
            }
            groups.insert(name, numbers);
        }
    }
    Ok(groups)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(entries: &[(&str, &[&str])]) -> BTreeMap<String, Vec<String>> {
        entries
            .iter()
            .map(|(n, v)| (n.to_string(), v.iter().map(|s| s.to_string()).collect()))
            .collect()
    }

    #[test]
    fn groups_are_found_without_case_and_keep_their_numbers() {
        let groups =
            check(&table(&[("OnCall", &["+33601020304", "0601020305"])]), "FR").expect("groups");
        assert_eq!(groups["oncall"], vec!["+33601020304", "0601020305"]);
    }

    #[test]
    fn a_bad_group_is_named() {
        let err = check(&table(&[("ops", &["0123"])]), "FR").expect_err("bad number");
        assert!(
            err.contains("`ops`") && err.contains("`0123`") && err.contains("too short"),
            "{err}"
        );
        let err = check(&table(&[("0601", &["0601020304"])]), "FR").expect_err("number name");
        assert!(err.contains("group name `0601`"), "{err}");
        let err = check(&table(&[("ops", &[])]), "FR").expect_err("empty");
        assert!(err.contains("no numbers"), "{err}");
        let err = check(
            &table(&[("Ops", &["0601020304"]), ("ops", &["0601020304"])]),
            "FR",
        )
        .expect_err("twice");
        assert!(err.contains("twice"), "{err}");
    }

    #[test]
    fn a_groups_file_adds_groups_and_its_errors_name_it() {
        let dir = tempfile::tempdir().expect("dir");
        let file = dir.path().join("oncall.toml");
        std::fs::write(&file, "night = [\"0601020306\"]\n").expect("write");
        let groups = load(&table(&[("day", &["0601020305"])]), Some(&file), "FR").expect("load");
        assert_eq!(groups.keys().collect::<Vec<_>>(), ["day", "night"]);
        let err = load(&table(&[("night", &["0601020305"])]), Some(&file), "FR").expect_err("both");
        assert!(err.contains("both"), "{err}");
        std::fs::write(&file, "night = [\"12\"]\n").expect("write");
        let err = read_file(&file, "FR").expect_err("bad number");
        assert!(err.contains("oncall.toml") && err.contains("`12`"), "{err}");
        std::fs::write(&file, "night = 3\n").expect("write");
        assert!(
            read_file(&file, "FR")
                .expect_err("not a list")
                .contains("oncall.toml")
        );
        let missing = dir.path().join("missing.toml");
        assert!(
            read_file(&missing, "FR")
                .expect_err("missing")
                .contains("missing.toml")
        );
    }
}
