//! Interface resolution between plugins: which loaded plugin satisfies each
//! requirement (semver ranges), and whether replacing a provider keeps every
//! consumer's range satisfied. Pure decisions; the registry applies them.

use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt;
use semver::{Version, VersionReq};

/// An interface a loaded plugin provides.
#[derive(Clone, Debug)]
pub struct Offer<'a> {
    pub plugin: &'a str,
    pub interface: &'a str,
    pub version: &'a Version,
}

/// A requirement of a plugin being loaded.
#[derive(Clone, Debug)]
pub struct Need<'a> {
    pub interface: &'a str,
    pub range: &'a VersionReq,
}

/// Why one requirement cannot be met.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unmet {
    pub interface: String,
    pub range: String,
    /// Loaded providers of the interface whose version is out of range.
    pub found: Vec<String>,
}

impl fmt::Display for Unmet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`{} {}`", self.interface, self.range)?;
        if self.found.is_empty() {
            write!(f, " (nothing loaded provides it)")
        } else {
            write!(f, " (loaded: {})", self.found.join(", "))
        }
    }
}

/// For each need, the index of the offer that meets it (the highest
/// version in range); or every need that cannot be met.
pub fn resolve(needs: &[Need], offers: &[Offer]) -> Result<Vec<usize>, Vec<Unmet>> {
    let mut chosen = Vec::new();
    let mut unmet = Vec::new();
    for need in needs {
        let best = offers
            .iter()
            .enumerate()
            .filter(|(_, o)| o.interface == need.interface && need.range.matches(o.version))
            .max_by(|(_, a), (_, b)| a.version.cmp(b.version));
        match best {
            Some((i, _)) => chosen.push(i),
            None => unmet.push(Unmet {
                interface: need.interface.into(),
                range: need.range.to_string(),
                found: offers
                    .iter()
                    .filter(|o| o.interface == need.interface)
                    .map(|o| alloc::format!("{} {} from {}", o.interface, o.version, o.plugin))
                    .collect(),
            }),
        }
    }
    if unmet.is_empty() {
        Ok(chosen)
    } else {
        Err(unmet)
    }
}

/// A consumer that relies on an interface of the plugin being replaced.
#[derive(Clone, Debug)]
pub struct Use<'a> {
    pub consumer: &'a str,
    pub interface: &'a str,
    pub range: &'a VersionReq,
}

/// A consumer whose range the replacement would break.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Broken {
    pub consumer: String,
    pub interface: String,
    pub range: String,
    /// The replacement's version of the interface, if it still provides it.
    pub offered: Option<String>,
}

impl fmt::Display for Broken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.offered {
            Some(v) => write!(
                f,
                "{} needs `{} {}` but the new version provides {v}",
                self.consumer, self.interface, self.range
            ),
            None => write!(
                f,
                "{} needs `{} {}` which the new version does not provide",
                self.consumer, self.interface, self.range
            ),
        }
    }
}

/// Checks that `replacement` (interface, version) still meets every use.
pub fn check_replacement(uses: &[Use], replacement: &[(&str, &Version)]) -> Result<(), Vec<Broken>> {
    let broken: Vec<Broken> = uses
        .iter()
        .filter_map(|u| {
            let offered = replacement.iter().find(|(i, _)| *i == u.interface).map(|(_, v)| *v);
            match offered {
                Some(v) if u.range.matches(v) => None,
                _ => Some(Broken {
                    consumer: u.consumer.into(),
                    interface: u.interface.into(),
                    range: u.range.to_string(),
                    offered: offered.map(|v| v.to_string()),
                }),
            }
        })
        .collect();
    if broken.is_empty() {
        Ok(())
    } else {
        Err(broken)
    }
}

/// Splits a plugin store path `plugins/<name>-<version>.mvp` into name and
/// version. Names contain dashes too: the version starts at the first dash
/// after which a valid semver version follows.
pub fn store_path(path: &str) -> Option<(&str, Version)> {
    let stem = path.strip_prefix("plugins/")?.strip_suffix(".mvp")?;
    stem.match_indices('-').find_map(|(i, _)| {
        let (name, version) = (&stem[..i], &stem[i + 1..]);
        Version::parse(version).ok().filter(|_| !name.is_empty()).map(|v| (name, v))
    })
}

/// The plugin a user means: `counter` and `counter-plugin` both name the
/// folder `counter-plugin`.
pub fn plugin_name(user: &str) -> String {
    if user.ends_with("-plugin") {
        user.into()
    } else {
        alloc::format!("{user}-plugin")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec;

    fn v(s: &str) -> Version {
        Version::parse(s).unwrap()
    }
    fn r(s: &str) -> VersionReq {
        VersionReq::parse(s).unwrap()
    }

    #[test]
    fn picks_the_highest_version_in_range() {
        let (v1, v15, v2) = (v("1.0.0"), v("1.5.0"), v("2.0.0"));
        let offers = [
            Offer { plugin: "a", interface: "counter", version: &v1 },
            Offer { plugin: "b", interface: "counter", version: &v15 },
            Offer { plugin: "c", interface: "counter", version: &v2 },
        ];
        let range = r("^1.0");
        assert_eq!(resolve(&[Need { interface: "counter", range: &range }], &offers), Ok(vec![1]));
        let wide = r(">=1.0.0, <3.0.0");
        assert_eq!(resolve(&[Need { interface: "counter", range: &wide }], &offers), Ok(vec![2]));
    }

    #[test]
    fn every_unmet_requirement_is_listed() {
        let v1 = v("1.0.0");
        let offers = [Offer { plugin: "counter-plugin", interface: "counter", version: &v1 }];
        let (r2, rx) = (r("^2"), r("^1"));
        let needs = [Need { interface: "counter", range: &r2 }, Need { interface: "nonexistent", range: &rx }];
        let unmet = resolve(&needs, &offers).unwrap_err();
        assert_eq!(unmet.len(), 2);
        assert_eq!(unmet[0].found, ["counter 1.0.0 from counter-plugin"]);
        assert!(unmet[1].found.is_empty());
        assert_eq!(unmet[1].to_string(), "`nonexistent ^1` (nothing loaded provides it)");
    }

    #[test]
    fn store_paths_split_at_the_version() {
        assert_eq!(store_path("plugins/counter-plugin-1.0.0.mvp"), Some(("counter-plugin", v("1.0.0"))));
        assert_eq!(store_path("plugins/a-b-2.1.0-rc.1.mvp"), Some(("a-b", v("2.1.0-rc.1"))));
        assert_eq!(store_path("plugins/bad-truncated.mvp"), None);
        assert_eq!(store_path("image.txt"), None);
        assert_eq!(store_path("plugins/-1.0.0.mvp"), None);
        assert_eq!(plugin_name("counter"), "counter-plugin");
        assert_eq!(plugin_name("cpuhp-plugin"), "cpuhp-plugin");
    }

    #[test]
    fn replacement_must_keep_consumers_in_range() {
        let range = r(">=1.0.0, <3.0.0");
        let uses = [Use { consumer: "consumer-plugin", interface: "counter", range: &range }];
        let (v2, v3) = (v("2.0.0"), v("3.0.0"));
        assert_eq!(check_replacement(&uses, &[("counter", &v2)]), Ok(()));
        let broken = check_replacement(&uses, &[("counter", &v3)]).unwrap_err();
        assert_eq!(broken[0].offered.as_deref(), Some("3.0.0"));
        let gone = check_replacement(&uses, &[("other", &v2)]).unwrap_err();
        assert_eq!(gone[0].offered, None);
        assert!(gone[0].to_string().contains("does not provide"));
    }
}
