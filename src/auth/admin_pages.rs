//! The admin pages answer 403 to a signed-in user who is not an admin.
//!
//! The pages render their own "admins only" notice; this middleware makes
//! the HTTP status agree, which a streamed page cannot always do itself.

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::Response;
use tower_sessions::Session;

use super::session;
use crate::db::users;
use crate::server::AppState;

/// Whether `path` is one of the admin pages.
pub fn is_admin_page(path: &str) -> bool {
    path == "/dashboard/admin" || path.starts_with("/dashboard/admin/")
}

/// Sets 403 on an admin page rendered for a signed-in non-admin.
pub async fn forbid_non_admins(
    State(state): State<AppState>,
    session: Session,
    request: Request,
    next: Next,
) -> Response {
    if !is_admin_page(request.uri().path()) {
        return next.run(request).await;
    }
    let forbidden = match session::user_id(&session).await.ok().flatten() {
        Some(user_id) => match users::find_by_id(&state.db, &user_id).await {
            Ok(Some(user)) => !state.config.is_admin(&user.role, user.email.as_deref()),
            _ => false,
        },
        None => false,
    };
    let mut response = next.run(request).await;
    if forbidden && response.status().is_success() {
        *response.status_mut() = StatusCode::FORBIDDEN;
    }
    response
}

#[cfg(test)]
mod tests {
    use super::is_admin_page;

    #[test]
    fn admin_pages_are_recognised() {
        assert!(is_admin_page("/dashboard/admin"));
        assert!(is_admin_page("/dashboard/admin/users"));
        assert!(!is_admin_page("/dashboard/administrator"));
        assert!(!is_admin_page("/dashboard/usage"));
    }
}
