//! Per-request context carried in a task-local: the request id (for problem
//! documents and logs), the client IP, and the signed-in user once known.

use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use domain::roles::Role;
use uuid::Uuid;

use crate::class::Class;

#[derive(Debug)]
pub struct RequestCtx {
    pub request_id: String,
    pub client_ip: IpAddr,
    user: Mutex<Option<(Uuid, Role)>>,
    /// Set by a router that classifies its own requests (the web UI).
    class: Mutex<Option<Class>>,
    /// Set when the request met a database fault (kind, whether in the audit
    /// trail), so the request layer counts it as a fault, not as a bug.
    db_fault: Mutex<Option<(store::FaultKind, bool)>>,
    /// The `User-Agent` header (cut to 200 characters), for the session list.
    user_agent: Mutex<Option<String>>,
    /// The patient a refused request was about when no id in its path says
    /// so (an id in the body, e.g. the AI routes), for the refusal's audit.
    refused_patient: Mutex<Option<Uuid>>,
}

impl RequestCtx {
    pub fn new(request_id: String, client_ip: IpAddr) -> Arc<RequestCtx> {
        Arc::new(RequestCtx {
            request_id,
            client_ip,
            user: Mutex::new(None),
            class: Mutex::new(None),
            db_fault: Mutex::new(None),
            user_agent: Mutex::new(None),
            refused_patient: Mutex::new(None),
        })
    }

    pub fn set_user_agent(&self, agent: &str) {
        if let Ok(mut g) = self.user_agent.lock() {
            *g = Some(agent.chars().take(200).collect());
        }
    }

    pub fn user_agent(&self) -> Option<String> {
        self.user_agent.lock().ok().and_then(|g| g.clone())
    }

    pub fn set_user(&self, id: Uuid, role: Role) {
        if let Ok(mut u) = self.user.lock() {
            *u = Some((id, role));
        }
    }

    pub fn user(&self) -> Option<(Uuid, Role)> {
        self.user.lock().ok().and_then(|u| *u)
    }

    pub fn set_class(&self, class: Class) {
        if let Ok(mut c) = self.class.lock() {
            *c = Some(class);
        }
    }

    pub fn class(&self) -> Option<Class> {
        self.class.lock().ok().and_then(|c| c.clone())
    }

    pub fn set_db_fault(&self, kind: store::FaultKind, audit: bool) {
        if let Ok(mut f) = self.db_fault.lock() {
            *f = Some((kind, audit));
        }
    }

    pub fn set_refused_patient(&self, patient: Uuid) {
        if let Ok(mut p) = self.refused_patient.lock() {
            *p = Some(patient);
        }
    }

    pub fn refused_patient(&self) -> Option<Uuid> {
        self.refused_patient.lock().ok().and_then(|p| *p)
    }

    pub fn db_fault(&self) -> Option<(store::FaultKind, bool)> {
        self.db_fault.lock().ok().and_then(|f| *f)
    }
}

tokio::task_local! {
    pub static CTX: Arc<RequestCtx>;
}

/// The current request's context, if called inside a request.
pub fn current() -> Option<Arc<RequestCtx>> {
    CTX.try_with(Arc::clone).ok()
}

/// Note that the current request was refused access to `patient`'s data
/// (the request layer audits the refusal with it).
pub fn refused_patient(patient: Uuid) {
    if let Some(c) = current() {
        c.set_refused_patient(patient);
    }
}

/// The current request id ("" outside a request).
pub fn request_id() -> String {
    current().map(|c| c.request_id.clone()).unwrap_or_default()
}
