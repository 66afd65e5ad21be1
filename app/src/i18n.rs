//! English and Chinese. The English text is the key: `t("Workflows")` reads in the language the
//! person chose, and a string without a translation shows in English (a test lists any such).
//! The choice (and the theme) is kept per user and in a cookie, so the server renders the first
//! page in it.

use leptos::prelude::*;
use serde::{Deserialize, Serialize};

mod cron_zh;
mod problems;
mod zh;

pub use cron_zh::describe_cron;
pub use problems::problem;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Lang {
    #[default]
    En,
    Zh,
}

impl Lang {
    pub const ALL: [Lang; 2] = [Lang::En, Lang::Zh];

    pub fn code(self) -> &'static str {
        match self {
            Lang::En => "en",
            Lang::Zh => "zh",
        }
    }

    /// The language's own name, for the switcher.
    pub fn native(self) -> &'static str {
        match self {
            Lang::En => "English",
            Lang::Zh => "中文",
        }
    }

    pub fn parse(s: &str) -> Option<Lang> {
        match s.trim().to_ascii_lowercase().as_str() {
            "en" => Some(Lang::En),
            "zh" | "zh-cn" | "zh-hans" => Some(Lang::Zh),
            _ => None,
        }
    }

    /// The first language of an `Accept-Language` header that we speak.
    pub fn from_accept(header: &str) -> Option<Lang> {
        header.split(',').filter_map(|part| part.split(';').next()).find_map(|tag| {
            let tag = tag.trim().to_ascii_lowercase();
            Lang::parse(tag.split('-').next().unwrap_or_default())
        })
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Theme {
    /// Follow the system's light or dark setting.
    #[default]
    System,
    Light,
    Dark,
}

impl Theme {
    pub const ALL: [Theme; 3] = [Theme::System, Theme::Light, Theme::Dark];

    pub fn code(self) -> &'static str {
        match self {
            Theme::System => "system",
            Theme::Light => "light",
            Theme::Dark => "dark",
        }
    }

    pub fn parse(s: &str) -> Option<Theme> {
        Theme::ALL.into_iter().find(|t| t.code() == s.trim())
    }

    pub fn label(self) -> &'static str {
        match self {
            Theme::System => k("System theme"),
            Theme::Light => k("Light"),
            Theme::Dark => k("Dark"),
        }
    }
}

/// A person's display preferences.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Prefs {
    #[serde(default)]
    pub lang: Lang,
    #[serde(default)]
    pub theme: Theme,
}

/// The cookies the preferences travel in.
pub const LANG_COOKIE: &str = "orrery_lang";
pub const THEME_COOKIE: &str = "orrery_theme";

impl Prefs {
    /// From a `Cookie` header (and `Accept-Language` when no language was chosen).
    pub fn from_headers(cookie: Option<&str>, accept_language: Option<&str>) -> Prefs {
        let mut prefs =
            Prefs { lang: accept_language.and_then(Lang::from_accept).unwrap_or_default(), ..Prefs::default() };
        for pair in cookie.unwrap_or_default().split(';') {
            let Some((k, v)) = pair.trim().split_once('=') else { continue };
            match k {
                LANG_COOKIE => prefs.lang = Lang::parse(v).unwrap_or(prefs.lang),
                THEME_COOKIE => prefs.theme = Theme::parse(v).unwrap_or(prefs.theme),
                _ => {}
            }
        }
        prefs
    }

    /// `Set-Cookie` values that keep these preferences for a year.
    pub fn cookies(self, secure: bool) -> [String; 2] {
        let tail = if secure { "; Secure" } else { "" };
        [
            format!("{LANG_COOKIE}={}; Path=/; Max-Age=31536000; SameSite=Lax{tail}", self.lang.code()),
            format!("{THEME_COOKIE}={}; Path=/; Max-Age=31536000; SameSite=Lax{tail}", self.theme.code()),
        ]
    }
}

/// The English text in `lang`.
pub fn tr(lang: Lang, en: &'static str) -> &'static str {
    match lang {
        Lang::En => en,
        Lang::Zh => zh::TABLE.binary_search_by(|(k, _)| k.cmp(&en)).map_or(en, |i| zh::TABLE[i].1),
    }
}

/// Marks a text to translate where it is written but shown later (a label in a table of
/// options, a dialog's title): `tr(lang, k("Graph"))`. It is the text itself.
pub const fn k(en: &'static str) -> &'static str {
    en
}

/// The page's preferences, as a signal every text reads.
#[derive(Clone, Copy)]
pub struct PrefsContext(pub RwSignal<Prefs>);

pub fn provide_prefs(initial: Prefs) -> PrefsContext {
    let ctx = PrefsContext(RwSignal::new(initial));
    provide_context(ctx);
    ctx
}

pub fn use_prefs() -> RwSignal<Prefs> {
    use_context::<PrefsContext>().map(|c| c.0).unwrap_or_else(|| RwSignal::new(Prefs::default()))
}

/// A text in the chosen language, as a reactive value for a view or an attribute.
pub fn t(en: &'static str) -> impl Fn() -> &'static str + Copy + Send + Sync + 'static {
    let prefs = use_prefs();
    move || tr(prefs.get().lang, en)
}

/// The chosen language, now (for text built in code).
pub fn lang() -> Lang {
    use_prefs().get().lang
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_is_sorted_and_unique() {
        for w in zh::TABLE.windows(2) {
            assert!(w[0].0 < w[1].0, "out of order or doubled: {:?} then {:?}", w[0].0, w[1].0);
        }
    }

    /// Every `t("...")` and `tr(_, "...")` in the console has a Chinese text.
    #[test]
    fn every_text_of_the_console_is_translated() {
        let mut missing = Vec::new();
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut stack = vec![root];
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    stack.push(path);
                } else if path.extension().is_some_and(|e| e == "rs") {
                    let src = std::fs::read_to_string(&path).unwrap();
                    let src = src.split("#[cfg(test)]").next().unwrap_or_default();
                    for text in keys_in(src) {
                        if tr(Lang::Zh, leak(text.clone())) == text && !missing.contains(&text) {
                            missing.push(text);
                        }
                    }
                }
            }
        }
        assert!(missing.is_empty(), "no Chinese text for:\n{}", missing.join("\n"));
    }

    fn leak(s: String) -> &'static str {
        Box::leak(s.into_boxed_str())
    }

    /// The literal texts of `t("…")`, `k("…")` and `tr(lang, "…")` in a source file.
    fn keys_in(src: &str) -> Vec<String> {
        let mut out = Vec::new();
        for pat in ["t(\"", "k(\"", "tr("] {
            let mut rest = src;
            while let Some(i) = rest.find(pat) {
                let before = rest[..i].chars().last();
                rest = &rest[i + pat.len()..];
                if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
                    continue;
                }
                let literal = if pat == "tr(" {
                    // `tr(<language>, "text")`: a literal right after the first comma.
                    let Some(c) = rest.find(',') else { continue };
                    let after = rest[c + 1..].trim_start();
                    if rest[..c].contains(['"', ';', '{']) || !after.starts_with('"') {
                        continue;
                    }
                    &after[1..]
                } else {
                    rest
                };
                if let Some(end) = literal.find('"') {
                    out.push(literal[..end].replace("\\\"", "\""));
                }
            }
        }
        out
    }

    #[test]
    fn preferences_come_from_cookies_then_the_browser() {
        let p = Prefs::from_headers(Some("a=b; orrery_lang=zh; orrery_theme=dark"), Some("en-US,en;q=0.9"));
        assert_eq!(p, Prefs { lang: Lang::Zh, theme: Theme::Dark });
        let p = Prefs::from_headers(None, Some("zh-CN,zh;q=0.9,en;q=0.8"));
        assert_eq!(p.lang, Lang::Zh);
        assert_eq!(Prefs::from_headers(None, Some("fr-FR")).lang, Lang::En);
        assert_eq!(tr(Lang::Zh, "Workflows"), "工作流");
        assert_eq!(tr(Lang::Zh, "a text nobody wrote"), "a text nobody wrote");
    }
}
