//! The shipped size `runner bench` holds to its goal: the stripped loader
//! and the store files of the plugins the `default` image loads.

/// `counter-plugin-1.0.0.mvp` as (`counter-plugin`, `1.0.0`).
pub fn plugin_file(file: &str) -> Option<(&str, &str)> {
    let stem = file.strip_suffix(".mvp")?;
    let (name, version) = stem.rsplit_once('-')?;
    version.split('.').all(|p| p.parse::<u32>().is_ok()).then_some((name, version))
}

fn version_key(v: &str) -> Vec<u32> {
    v.split('.').filter_map(|p| p.parse().ok()).collect()
}

/// The store files a `load=` list names among `files` (file name, bytes):
/// the version asked for, or the highest as the loader picks it.
pub fn loaded_files(load: &str, files: &[(String, u64)]) -> Result<Vec<(String, u64)>, String> {
    load.split(',')
        .filter(|item| !item.is_empty())
        .map(|item| {
            let (name, version) = item.split_once('@').map_or((item, None), |(n, v)| (n, Some(v)));
            files
                .iter()
                .filter(|(f, _)| plugin_file(f).is_some_and(|(n, v)| n == name && version.is_none_or(|w| w == v)))
                .max_by_key(|(f, _)| plugin_file(f).map(|(_, v)| version_key(v)))
                .cloned()
                .ok_or_else(|| format!("no store file for `{item}`"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_versions_and_picks() {
        assert_eq!(plugin_file("counter-plugin-1.0.0.mvp"), Some(("counter-plugin", "1.0.0")));
        assert_eq!(plugin_file("bad-unsigned.mvp"), None);
        assert_eq!(plugin_file("counter-plugin-1.0.0.so"), None);
        let files: Vec<(String, u64)> = [
            ("cpuhp-plugin-1.2.0.mvp", 5),
            ("cpuhp-plugin-1.10.0.mvp", 7),
            ("counter-plugin-1.0.0.mvp", 3),
            ("counter-plugin-2.0.0.mvp", 4),
        ]
        .iter()
        .map(|(f, n)| (f.to_string(), *n))
        .collect();
        assert_eq!(
            loaded_files("cpuhp-plugin,counter-plugin@1.0.0", &files).unwrap(),
            [("cpuhp-plugin-1.10.0.mvp".to_string(), 7), ("counter-plugin-1.0.0.mvp".to_string(), 3)]
        );
        assert!(loaded_files("vmx-plugin", &files).unwrap_err().contains("vmx-plugin"));
        assert!(loaded_files("counter-plugin@9.0.0", &files).is_err());
    }
}
