//! What a request is, for rate limits and metrics: a pure function of its
//! method and path (the web UI sets its own class in the request context).

use axum::http::Method;

/// What a request is, for rate limits and metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Class {
    Auth(&'static str),
    Write(String),
    Read(String),
    Ai(String),
    Other(String),
}

impl Class {
    /// The rate-limit class (`auth`, `write`, `read`, `ai`), if counted.
    pub fn limit_name(&self) -> Option<&'static str> {
        match self {
            Class::Auth(_) => Some("auth"),
            Class::Write(_) => Some("write"),
            Class::Read(_) => Some("read"),
            Class::Ai(_) => Some("ai"),
            Class::Other(_) => None,
        }
    }

    /// Route-class name for durations: `api.read.patients`, `api.auth.signin`…
    pub fn metric_name(&self) -> String {
        match self {
            Class::Auth(a) => format!("api.auth.{a}"),
            Class::Write(r) => format!("api.write.{r}"),
            Class::Read(r) => format!("api.read.{r}"),
            Class::Ai(r) => format!("api.ai.{r}"),
            Class::Other(r) => format!("api.other.{r}"),
        }
    }
}

const CLINICAL: [&str; 4] = ["patients", "notes", "prescriptions", "labs"];

/// The class of an API request; everything outside `/api` is `Other`
/// here (the web router classifies its own pages with [`classify_web`]).
pub fn classify(method: &Method, path: &str) -> Class {
    let segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    if segs.first() == Some(&"fhir") {
        // FHIR reads count as reads; the CapabilityStatement is public.
        return if segs.get(2) == Some(&"metadata") || segs.len() < 3 {
            Class::Other("fhir".into())
        } else {
            Class::Read("fhir".into())
        };
    }
    if segs.first() != Some(&"api") {
        return Class::Other(if path == "/metrics" {
            "metrics".into()
        } else {
            "web".into()
        });
    }
    let first = segs.get(1).copied().unwrap_or("");
    match (first, segs.get(2).copied()) {
        ("auth", Some("signin")) if method == Method::POST => return Class::Auth("signin"),
        ("auth", Some("signup")) if method == Method::POST => return Class::Auth("signup"),
        ("auth", Some("refresh")) if method == Method::POST => return Class::Auth("refresh"),
        // Second-factor codes and set-password links are guesses to count
        // like passwords.
        ("auth", Some("mfa")) if method == Method::POST => return Class::Auth("mfa"),
        ("auth", Some("password")) if method == Method::POST && segs.get(3) == Some(&"set") => {
            return Class::Auth("password_set")
        }
        ("ai", op) => return Class::Ai(op.unwrap_or("other").replace('-', "_")),
        ("overview", _) if method == Method::GET => return Class::Read("overview".into()),
        _ => {}
    }
    if CLINICAL.contains(&first) {
        // /api/patients/{id}/notes is a request about notes.
        let resource = match (first, segs.get(3)) {
            ("patients", Some(sub)) if CLINICAL.contains(sub) => (*sub).to_string(),
            _ => first.to_string(),
        };
        return if method == Method::GET {
            Class::Read(resource)
        } else {
            Class::Write(resource)
        };
    }
    Class::Other(if first.is_empty() {
        "root".into()
    } else {
        first.to_string()
    })
}

/// The class of a web UI request, so pages count against the same limits
/// as the API calls they stand for: a chart page is a read, a form a write,
/// an AI button an AI call, the sign-in form a sign-in.
pub fn classify_web(method: &Method, path: &str) -> Class {
    let post = method == Method::POST;
    match path {
        "/login" if post => return Class::Auth("signin"),
        "/signup" | "/setup" if post => return Class::Auth("signup"),
        "/login" | "/signup" | "/setup" | "/logout" | "/favicon.svg" | "/favicon.ico" => {
            return Class::Other(format!(
                "web.{}",
                path.trim_start_matches('/').replace('.', "_")
            ))
        }
        _ => {}
    }
    if path.starts_with("/login/mfa") && method == Method::POST {
        return Class::Auth("mfa");
    }
    if path == "/set-password" && method == Method::POST {
        return Class::Auth("password_set");
    }
    let segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let first = segs.first().copied().unwrap_or("");
    if segs.contains(&"ai") || segs.last() == Some(&"explain") {
        let op = if segs.last() == Some(&"explain") {
            "explain"
        } else {
            "generate_note"
        };
        return Class::Ai(op.into());
    }
    if first.is_empty() {
        // The day view reads the worklist.
        return Class::Read("overview".into());
    }
    if !CLINICAL.contains(&first) {
        // Administration, static assets, the session heartbeat: named by
        // their first segment (`api.other.web.admin`), not counted.
        let name = match first {
            "admin" | "static" | "session" => first,
            _ => "unknown",
        };
        return Class::Other(format!("web.{name}"));
    }
    let resource = match (first, segs.get(2)) {
        ("patients", Some(sub)) if CLINICAL.contains(sub) => (*sub).to_string(),
        // Allergies and problems are part of the patient's chart.
        _ => first.to_string(),
    };
    if method == Method::GET {
        Class::Read(resource)
    } else {
        Class::Write(resource)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn web_pages_take_the_class_of_the_api_call_they_stand_for() {
        let get = Method::GET;
        let post = Method::POST;
        let id = "0190a4c2-0000-7000-8000-000000000000";
        assert_eq!(classify_web(&post, "/login"), Class::Auth("signin"));
        assert_eq!(
            classify_web(&get, "/login"),
            Class::Other("web.login".into())
        );
        assert_eq!(classify_web(&post, "/signup"), Class::Auth("signup"));
        assert_eq!(classify_web(&post, "/setup"), Class::Auth("signup"));
        assert_eq!(
            classify_web(&get, "/no/such/page"),
            Class::Other("web.unknown".into())
        );
        assert_eq!(classify_web(&get, "/"), Class::Read("overview".into()));
        assert_eq!(
            classify_web(&get, &format!("/patients/{id}")),
            Class::Read("patients".into())
        );
        assert_eq!(
            classify_web(&get, "/patients"),
            Class::Read("patients".into())
        );
        assert_eq!(
            classify_web(&post, &format!("/patients/{id}/notes")),
            Class::Write("notes".into())
        );
        assert_eq!(
            classify_web(&post, &format!("/patients/{id}/allergies")),
            Class::Write("patients".into())
        );
        assert_eq!(
            classify_web(&post, &format!("/notes/{id}/finalize")),
            Class::Write("notes".into())
        );
        assert_eq!(
            classify_web(&post, &format!("/patients/{id}/ai/draft")),
            Class::Ai("generate_note".into())
        );
        assert_eq!(
            classify_web(&post, &format!("/labs/{id}/explain")),
            Class::Ai("explain".into())
        );
        assert_eq!(
            classify_web(&get, "/admin/users"),
            Class::Other("web.admin".into())
        );
        assert_eq!(
            classify(&post, "/api/patients"),
            Class::Write("patients".into())
        );
        assert_eq!(classify(&get, "/patients"), Class::Other("web".into()));
        assert_eq!(
            classify(&get, &format!("/fhir/R4/Patient/{id}")),
            Class::Read("fhir".into())
        );
        assert_eq!(
            classify(&get, "/fhir/R4/Observation"),
            Class::Read("fhir".into())
        );
        assert_eq!(
            classify(&get, "/fhir/R4/metadata"),
            Class::Other("fhir".into())
        );
    }
}
