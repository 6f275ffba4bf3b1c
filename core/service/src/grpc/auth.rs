use ticketing_proto::v1::{self, auth_service_server::AuthService};
use tonic::{Request, Response, Status};

use ticketing_domain::{error::Violations, identity::ApiKeyScope};

use super::{context, status::to_status};
use crate::wire::{self, parse_id};
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

    async fn create_api_key(
        &self,
        request: Request<v1::CreateApiKeyRequest>,
    ) -> Result<Response<v1::CreateApiKeyResponse>, Status> {
        let ctx = context(&request);
        let caller = ctx.principal().map_err(to_status)?;
        let req = request.get_ref();
        let mut violations = Violations::default();
        let scopes: Vec<ApiKeyScope> = req
            .scopes
            .iter()
            .filter_map(|&scope| {
                let known = v1::ApiKeyScope::try_from(scope).ok().and_then(wire::api_key_scope_from_proto);
                violations.check(known.is_some(), "scopes", "must be API_KEY_SCOPE_… values other than UNSPECIFIED");
                known
            })
            .collect();
        violations.into_result().map_err(to_status)?;
        let expire_time = wire::time_from_proto(req.expire_time);
        let (key, scopes, secret) =
            app::api_keys::create(&self.state, caller, &req.name, scopes, expire_time).await.map_err(to_status)?;
        Ok(Response::new(v1::CreateApiKeyResponse { api_key: Some(wire::api_key_to_proto(&key, &scopes)), secret }))
    }

    async fn list_api_keys(
        &self,
        request: Request<v1::ListApiKeysRequest>,
    ) -> Result<Response<v1::ListApiKeysResponse>, Status> {
        let ctx = context(&request);
        let caller = ctx.principal().map_err(to_status)?;
        let keys = app::api_keys::list(&self.state, caller).await.map_err(to_status)?;
        let api_keys = keys.iter().map(|(key, scopes)| wire::api_key_to_proto(key, scopes)).collect();
        Ok(Response::new(v1::ListApiKeysResponse { api_keys }))
    }

    async fn revoke_api_key(&self, request: Request<v1::RevokeApiKeyRequest>) -> Result<Response<v1::ApiKey>, Status> {
        let ctx = context(&request);
        let caller = ctx.principal().map_err(to_status)?;
        let key_id = parse_id(&request.get_ref().api_key_id, "apiKeyId").map_err(to_status)?;
        let (key, scopes) = app::api_keys::revoke(&self.state, caller, key_id).await.map_err(to_status)?;
        Ok(Response::new(wire::api_key_to_proto(&key, &scopes)))
    }
}
