use ticketing_proto::v1::{self, auth_service_server::AuthService};
use tonic::{Request, Response, Status};

use super::{context, status::to_status};
use crate::wire;
use crate::{AppState, app};

#[derive(Clone)]
pub struct AuthApi {
    state: AppState,
}

impl AuthApi {
    pub fn new(state: AppState) -> AuthApi {
        AuthApi { state }
    }
}

pub(crate) fn role_to_proto(role: ticketing_domain::identity::Role) -> v1::Role {
    use ticketing_domain::identity::Role;
    match role {
        Role::Customer => v1::Role::Customer,
        Role::Organizer => v1::Role::Organizer,
        Role::Admin => v1::Role::Admin,
    }
}

#[tonic::async_trait]
impl AuthService for AuthApi {
    async fn register(&self, request: Request<v1::RegisterRequest>) -> Result<Response<v1::User>, Status> {
        let ctx = context(&request);
        let req = request.into_inner();
        let phone = Some(req.phone.as_str()).filter(|p| !p.is_empty());
        let user = app::auth::register(&self.state, &ctx, &req.email, req.password, phone).await.map_err(to_status)?;
        Ok(Response::new(v1::User {
            id: user.id.to_string(),
            email: user.email.clone(),
            role: role_to_proto(user.role).into(),
            create_time: wire::timestamp(user.created_at),
        }))
    }

    async fn issue_token(
        &self,
        request: Request<v1::IssueTokenRequest>,
    ) -> Result<Response<v1::IssueTokenResponse>, Status> {
        let ctx = context(&request);
        let req = request.into_inner();
        let issued = app::auth::issue_token(&self.state, &ctx, &req.email, req.password).await.map_err(to_status)?;
        Ok(Response::new(v1::IssueTokenResponse {
            access_token: issued.access_token,
            token_type: "Bearer".to_owned(),
            expires_in: i32::try_from(issued.expires_in.as_secs()).unwrap_or(i32::MAX),
        }))
    }
}
