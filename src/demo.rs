//! A small demo web shop that wayprobe can serve on loopback.
//!
//! It is the target of the example journeys, the README quick start and the
//! tests: an HTML login with CSRF protection and a session cookie, an account
//! page listing orders, a JavaScript shop page, and a JSON API (bearer-token
//! login, products, carts, checkout, orders). Fault switches make checkout
//! fail or slow down, so alerting and SLO demos have something to detect.
//!
//! All state lives in memory and is bounded (the oldest entries are evicted),
//! because the prober hits the shop forever.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::{FormRejection, QueryRejection};
use axum::extract::{ConnectInfo, Form, Path, Query, State};
use axum::http::header::{
    AUTHORIZATION, CACHE_CONTROL, CONTENT_TYPE, COOKIE, LOCATION, SET_COOKIE,
};
use axum::http::{Extensions, HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// The one demo user.
const USERNAME: &str = "alice";
/// How many sessions, tokens, carts, orders and CSRF tokens are kept at most.
const MAX_ENTRIES: usize = 10_000;
/// Lifetime of a bearer token from `/api/login`, in seconds.
const TOKEN_TTL_SECS: u64 = 3600;
/// Most orders listed on `/account`.
const ACCOUNT_ORDERS_SHOWN: usize = 20;
/// Largest delay accepted by `/-/demo/checkout-delay`, in milliseconds.
const MAX_DEMO_DELAY_MS: u64 = 60_000;

/// A product in the catalogue.
#[derive(Debug, Clone, Copy, Serialize)]
struct Product {
    id: &'static str,
    name: &'static str,
    price_cents: u64,
}

const PRODUCTS: [Product; 3] = [
    Product {
        id: "sku-1",
        name: "Teapot",
        price_cents: 2500,
    },
    Product {
        id: "sku-2",
        name: "Tea cups (4)",
        price_cents: 1800,
    },
    Product {
        id: "sku-3",
        name: "Loose leaf tea",
        price_cents: 900,
    },
];

fn product(id: &str) -> Option<&'static Product> {
    PRODUCTS.iter().find(|p| p.id == id)
}

/// A map that keeps at most `cap` entries, evicting the oldest insertion.
struct Bounded<V> {
    cap: usize,
    next_seq: u64,
    map: HashMap<String, (u64, V)>,
    order: BTreeMap<u64, String>,
}

impl<V> Default for Bounded<V> {
    fn default() -> Self {
        Self::with_capacity(MAX_ENTRIES)
    }
}

impl<V> Bounded<V> {
    fn with_capacity(cap: usize) -> Self {
        Self {
            cap: cap.max(1),
            next_seq: 0,
            map: HashMap::new(),
            order: BTreeMap::new(),
        }
    }

    fn insert(&mut self, key: String, value: V) {
        self.remove(&key);
        while self.map.len() >= self.cap {
            match self.order.pop_first() {
                Some((_, oldest)) => {
                    self.map.remove(&oldest);
                }
                None => break,
            }
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        self.order.insert(seq, key.clone());
        self.map.insert(key, (seq, value));
    }

    fn get(&self, key: &str) -> Option<&V> {
        self.map.get(key).map(|(_, v)| v)
    }

    fn get_mut(&mut self, key: &str) -> Option<&mut V> {
        self.map.get_mut(key).map(|(_, v)| v)
    }

    fn contains_key(&self, key: &str) -> bool {
        self.map.contains_key(key)
    }

    fn remove(&mut self, key: &str) -> Option<V> {
        let (seq, value) = self.map.remove(key)?;
        self.order.remove(&seq);
        Some(value)
    }

    /// Entries from the newest insertion to the oldest.
    fn iter_newest_first(&self) -> impl Iterator<Item = (&str, &V)> {
        self.order.values().rev().filter_map(|k| {
            self.map
                .get_key_value(k)
                .map(|(key, (_, v))| (key.as_str(), v))
        })
    }
}

#[derive(Debug, Clone, Serialize)]
struct LineItem {
    product_id: String,
    qty: u32,
}

struct Cart {
    owner: Option<String>,
    items: Vec<LineItem>,
}

struct Order {
    owner: Option<String>,
    items: Vec<LineItem>,
    total_cents: u64,
}

struct BearerToken {
    username: String,
    issued: Instant,
}

#[derive(Default)]
struct ShopState {
    /// session cookie value → user name
    sessions: Bounded<String>,
    /// bearer token → user
    tokens: Bounded<BearerToken>,
    /// CSRF form token → the `csrf` cookie it was issued with
    csrf: Bounded<String>,
    carts: Bounded<Cart>,
    orders: Bounded<Order>,
}

#[derive(Default)]
struct Shared {
    state: Mutex<ShopState>,
    checkout_failing: AtomicBool,
    checkout_delay_nanos: AtomicU64,
}

/// Shared state: users, sessions, carts, orders, and fault switches.
///
/// Cloning is cheap; all clones share the same state.
#[derive(Clone, Default)]
pub struct DemoShop {
    shared: Arc<Shared>,
}

impl DemoShop {
    /// The demo user's password (used by `wayprobe demo` to fill the
    /// SHOP_PASSWORD secret). The user name is `alice`.
    pub const PASSWORD: &'static str = "wonderland";

    /// Creates an empty shop: no sessions, carts or orders, checkout working.
    pub fn new() -> Self {
        Self::default()
    }

    /// The shop's routes, ready to be served.
    pub fn router(&self) -> Router {
        Router::new()
            .route("/", get(home_page))
            .route("/login", get(login_page).post(login_submit))
            .route("/logout", post(logout))
            .route("/account", get(account_page))
            .route("/shop", get(shop_page))
            .route("/api/login", post(api_login))
            .route("/api/products", get(api_products))
            .route("/api/cart", post(api_cart_add))
            .route("/api/cart/{cart_id}", get(api_cart_get))
            .route("/api/checkout", post(api_checkout))
            .route("/api/orders/{id}", get(api_order_get))
            .route("/api/me", get(api_me))
            .route("/-/demo/checkout", post(demo_checkout_switch))
            .route("/-/demo/checkout-delay", post(demo_checkout_delay))
            .fallback(not_found)
            .with_state(self.clone())
    }

    /// Makes /api/checkout fail with 503 (true) or work again (false).
    pub fn set_checkout_failing(&self, failing: bool) {
        self.shared
            .checkout_failing
            .store(failing, Ordering::SeqCst);
    }

    /// Whether /api/checkout currently fails with 503.
    pub fn checkout_failing(&self) -> bool {
        self.shared.checkout_failing.load(Ordering::SeqCst)
    }

    /// Adds this delay to every /api/checkout response (for latency SLO demos).
    pub fn set_checkout_delay(&self, delay: std::time::Duration) {
        let nanos = u64::try_from(delay.as_nanos()).unwrap_or(u64::MAX);
        self.shared
            .checkout_delay_nanos
            .store(nanos, Ordering::SeqCst);
    }

    fn checkout_delay(&self) -> Duration {
        Duration::from_nanos(self.shared.checkout_delay_nanos.load(Ordering::SeqCst))
    }

    fn state(&self) -> MutexGuard<'_, ShopState> {
        // A panic elsewhere must not take the shop down: the state stays usable.
        self.shared
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The user behind a valid bearer token or session cookie, if any.
    fn authenticated_user(&self, headers: &HeaderMap) -> Option<String> {
        let mut state = self.state();
        if let Some(token) = bearer_token(headers) {
            let expired = match state.tokens.get(token) {
                Some(t) if t.issued.elapsed() < Duration::from_secs(TOKEN_TTL_SECS) => {
                    return Some(t.username.clone());
                }
                Some(_) => true,
                None => false,
            };
            if expired {
                state.tokens.remove(token);
            }
        }
        cookie(headers, "session").and_then(|s| state.sessions.get(s).cloned())
    }

    /// Issues a fresh single-use CSRF token tied to the `csrf_cookie` value.
    fn issue_csrf(&self, csrf_cookie: &str) -> String {
        let token = random_hex();
        self.state()
            .csrf
            .insert(token.clone(), csrf_cookie.to_owned());
        token
    }
}

/// Serves the shop on `listener` until `shutdown` resolves (graceful).
pub async fn serve(
    listener: tokio::net::TcpListener,
    shop: DemoShop,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "demo shop listening");
    }
    let app = shop
        .router()
        .into_make_service_with_connect_info::<SocketAddr>();
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}

// ---------------------------------------------------------------------------
// helpers

fn random_hex() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

fn is_hex_id(s: &str) -> bool {
    (16..=64).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The value of cookie `name` in the request's `Cookie` headers.
fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| k.trim() == name)
        .map(|(_, v)| v.trim().trim_matches('"'))
        .filter(|v| !v.is_empty())
}

fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?.trim();
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

const STYLE: &str = "body{font-family:sans-serif;max-width:40em;margin:2em auto;padding:0 1em;\
line-height:1.5;color:#222}nav a{margin-right:1em}label{display:block;margin-top:.5em}\
input{padding:.3em}button{margin:.5em .5em 0 0;padding:.3em .8em}\
.error{color:#b00}.ok{color:#070}";

fn page(title: &str, body: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <title>{title} · Demo tea shop</title>\n<style>{STYLE}</style>\n</head>\n<body>\n\
         <nav><a href=\"/\">Home</a><a href=\"/shop\">Shop</a><a href=\"/account\">Account</a>\
         <a href=\"/login\">Log in</a></nav>\n{body}\n</body>\n</html>\n",
        title = crate::server::esc(title),
    )
}

fn html(status: StatusCode, body: String) -> Response {
    (
        status,
        [
            (CONTENT_TYPE, "text/html; charset=utf-8"),
            (CACHE_CONTROL, "no-store"),
        ],
        body,
    )
        .into_response()
}

fn json_response(status: StatusCode, body: Value) -> Response {
    (status, axum::Json(body)).into_response()
}

fn json_error(status: StatusCode, error: &str) -> Response {
    json_response(status, json!({ "error": error }))
}

fn redirect(location: &str, cookies: &[String]) -> Response {
    let mut response = StatusCode::SEE_OTHER.into_response();
    let headers = response.headers_mut();
    if let Ok(v) = location.parse() {
        headers.insert(LOCATION, v);
    }
    append_cookies(headers, cookies);
    response
}

fn append_cookies(headers: &mut HeaderMap, cookies: &[String]) {
    for c in cookies {
        if let Ok(v) = c.parse() {
            headers.append(SET_COOKIE, v);
        }
    }
}

fn set_cookie(name: &str, value: &str) -> String {
    format!("{name}={value}; Path=/; HttpOnly; SameSite=Lax")
}

/// A JSON error answer, kept small so `Result`s carrying it stay cheap.
struct ApiError {
    status: StatusCode,
    body: Value,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        json_response(self.status, self.body)
    }
}

/// Parses a JSON body whatever its Content-Type: syntax errors give 400,
/// well-formed JSON of the wrong shape gives 422, both with a JSON body.
fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| {
        let (status, error) = match e.classify() {
            serde_json::error::Category::Data => {
                (StatusCode::UNPROCESSABLE_ENTITY, "invalid_request")
            }
            _ => (StatusCode::BAD_REQUEST, "invalid_json"),
        };
        ApiError {
            status,
            body: json!({ "error": error, "detail": e.to_string() }),
        }
    })
}

fn cart_json(cart_id: &str, cart: &Cart) -> Value {
    json!({
        "cart_id": cart_id,
        "items": cart.items,
        "total_cents": total_cents(&cart.items),
    })
}

fn order_json(order_id: &str, order: &Order) -> Value {
    json!({
        "order_id": order_id,
        "status": "confirmed",
        "total_cents": order.total_cents,
        "items": order.items,
    })
}

fn total_cents(items: &[LineItem]) -> u64 {
    items
        .iter()
        .map(|i| {
            product(&i.product_id)
                .map_or(0, |p| p.price_cents)
                .saturating_mul(u64::from(i.qty))
        })
        .fold(0, u64::saturating_add)
}

// ---------------------------------------------------------------------------
// HTML pages

async fn home_page() -> Response {
    html(
        StatusCode::OK,
        page(
            "Home",
            "<h1>Demo tea shop</h1>\n<p>A tiny shop for wayprobe's example journeys.</p>\n<ul>\n\
             <li><a href=\"/login\">Log in</a></li>\n<li><a href=\"/shop\">Shop</a></li>\n\
             <li><a href=\"/account\">Your account</a></li>\n</ul>",
        ),
    )
}

fn login_form(csrf_token: &str, error: Option<&str>) -> String {
    let error = error.map_or(String::new(), |e| {
        format!(
            "<p class=\"error\" id=\"login-error\">{}</p>\n",
            crate::server::esc(e)
        )
    });
    format!(
        "<h1>Log in</h1>\n{error}<form method=\"post\" action=\"/login\" id=\"login-form\">\n\
         <input type=\"hidden\" name=\"csrf_token\" value=\"{token}\">\n\
         <label for=\"username\">User name</label>\n\
         <input name=\"username\" id=\"username\" autocomplete=\"username\">\n\
         <label for=\"password\">Password</label>\n\
         <input type=\"password\" name=\"password\" id=\"password\" autocomplete=\"current-password\">\n\
         <div><button type=\"submit\" id=\"login-button\">Log in</button></div>\n</form>",
        token = crate::server::esc(csrf_token),
    )
}

/// A login page with a fresh CSRF token; reuses the request's `csrf` cookie
/// when it looks like one of ours so several open forms all stay valid.
fn login_response(
    shop: &DemoShop,
    headers: &HeaderMap,
    status: StatusCode,
    error: Option<&str>,
) -> Response {
    let csrf_id = cookie(headers, "csrf")
        .filter(|c| is_hex_id(c))
        .map_or_else(random_hex, str::to_owned);
    let token = shop.issue_csrf(&csrf_id);
    let mut response = html(status, page("Log in", &login_form(&token, error)));
    append_cookies(response.headers_mut(), &[set_cookie("csrf", &csrf_id)]);
    response
}

async fn login_page(State(shop): State<DemoShop>, headers: HeaderMap) -> Response {
    login_response(&shop, &headers, StatusCode::OK, None)
}

#[derive(Deserialize)]
struct LoginForm {
    #[serde(default)]
    csrf_token: String,
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
}

async fn login_submit(
    State(shop): State<DemoShop>,
    headers: HeaderMap,
    form: Result<Form<LoginForm>, FormRejection>,
) -> Response {
    let Ok(Form(form)) = form else {
        return html(
            StatusCode::BAD_REQUEST,
            page(
                "Bad request",
                "<h1>Bad request</h1>\n<p class=\"error\">Could not read the login form.</p>",
            ),
        );
    };
    let csrf_ok = {
        let mut state = shop.state();
        match (
            cookie(&headers, "csrf"),
            state.csrf.remove(&form.csrf_token),
        ) {
            (Some(cookie), Some(issued_for)) => cookie == issued_for,
            _ => false,
        }
    };
    if !csrf_ok {
        return html(
            StatusCode::FORBIDDEN,
            page(
                "Forbidden",
                "<h1>Forbidden</h1>\n<p class=\"error\">Invalid CSRF token</p>\n\
                 <p><a href=\"/login\">Try again</a></p>",
            ),
        );
    }
    if form.username != USERNAME || form.password != DemoShop::PASSWORD {
        return login_response(
            &shop,
            &headers,
            StatusCode::UNAUTHORIZED,
            Some("Invalid user name or password"),
        );
    }
    let session = random_hex();
    shop.state()
        .sessions
        .insert(session.clone(), USERNAME.to_owned());
    tracing::debug!("demo shop: alice logged in");
    redirect("/account", &[set_cookie("session", &session)])
}

async fn logout(State(shop): State<DemoShop>, headers: HeaderMap) -> Response {
    if let Some(session) = cookie(&headers, "session") {
        shop.state().sessions.remove(session);
    }
    redirect(
        "/login",
        &["session=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0".to_owned()],
    )
}

async fn account_page(State(shop): State<DemoShop>, headers: HeaderMap) -> Response {
    let Some(user) = shop.authenticated_user(&headers) else {
        return redirect("/login", &[]);
    };
    let items: Vec<String> = {
        let state = shop.state();
        state
            .orders
            .iter_newest_first()
            .filter(|(_, o)| o.owner.as_deref() == Some(user.as_str()))
            .take(ACCOUNT_ORDERS_SHOWN)
            .map(|(id, o)| {
                let n: u64 = o.items.iter().map(|i| u64::from(i.qty)).sum();
                let id = crate::server::esc(id);
                format!(
                    "<li class=\"order\" data-order-id=\"{id}\">{id}: confirmed, {n} items</li>"
                )
            })
            .collect()
    };
    let orders = if items.is_empty() {
        "<p id=\"no-orders\">No orders yet</p>".to_owned()
    } else {
        format!("<ul id=\"orders\">\n{}\n</ul>", items.join("\n"))
    };
    let body = format!(
        "<h1>Your account</h1>\n<p id=\"signed-in\">Signed in as {user}</p>\n<h2>Orders</h2>\n\
         {orders}\n<form method=\"post\" action=\"/logout\" id=\"logout-form\">\
         <button type=\"submit\" id=\"logout-button\">Log out</button></form>",
        user = crate::server::esc(&user),
    );
    html(StatusCode::OK, page("Your account", &body))
}

const SHOP_BODY: &str = r##"<h1>Shop</h1>
<div id="products">Loading products…</div>
<p>Cart: <span id="cart-count">0</span> items</p>
<button id="checkout" disabled>Check out</button>
<div id="result"></div>
<script>
(function () {
  var cartId = null;
  var products = document.getElementById('products');
  var count = document.getElementById('cart-count');
  var checkout = document.getElementById('checkout');
  var result = document.getElementById('result');
  function postJson(url, body) {
    return fetch(url, {
      method: 'POST',
      credentials: 'same-origin',
      headers: {'Content-Type': 'application/json'},
      body: JSON.stringify(body)
    });
  }
  function add(sku) {
    var body = {product_id: sku, qty: 1};
    if (cartId) { body.cart_id = cartId; }
    postJson('/api/cart', body).then(function (r) {
      if (!r.ok) { throw new Error(String(r.status)); }
      return r.json();
    }).then(function (cart) {
      cartId = cart.cart_id;
      var n = 0;
      cart.items.forEach(function (i) { n += i.qty; });
      count.textContent = String(n);
      checkout.disabled = n === 0;
    }).catch(function (e) {
      result.className = 'error';
      result.textContent = 'Add to cart failed: ' + e.message;
    });
  }
  fetch('/api/products', {credentials: 'same-origin'}).then(function (r) {
    if (!r.ok) { throw new Error(String(r.status)); }
    return r.json();
  }).then(function (list) {
    products.textContent = '';
    list.forEach(function (p) {
      var b = document.createElement('button');
      b.className = 'add';
      b.setAttribute('data-sku', p.id);
      b.textContent = 'Add ' + p.name;
      b.addEventListener('click', function () { add(p.id); });
      products.appendChild(b);
    });
  }).catch(function (e) {
    products.textContent = 'Could not load products: ' + e.message;
  });
  checkout.addEventListener('click', function () {
    if (!cartId) { return; }
    checkout.disabled = true;
    result.className = '';
    result.textContent = '';
    postJson('/api/checkout', {cart_id: cartId}).then(function (r) {
      return r.json().catch(function () { return {}; }).then(function (body) {
        return {ok: r.ok, status: r.status, body: body};
      });
    }, function () {
      return {ok: false, status: 'network error', body: {}};
    }).then(function (res) {
      setTimeout(function () {
        if (res.ok) {
          cartId = null;
          count.textContent = '0';
          result.className = 'ok';
          result.setAttribute('data-order-id', res.body.order_id);
          result.textContent = 'Order ' + res.body.order_id + ' confirmed';
        } else {
          checkout.disabled = false;
          result.className = 'error';
          result.textContent = 'Checkout failed: ' + res.status;
        }
      }, 300);
    });
  });
})();
</script>"##;

async fn shop_page() -> Response {
    html(StatusCode::OK, page("Shop", SHOP_BODY))
}

// ---------------------------------------------------------------------------
// JSON API

#[derive(Deserialize)]
struct ApiLogin {
    username: String,
    password: String,
}

async fn api_login(State(shop): State<DemoShop>, body: Bytes) -> Response {
    let login: ApiLogin = match parse_json(&body) {
        Ok(l) => l,
        Err(e) => return e.into_response(),
    };
    if login.username != USERNAME || login.password != DemoShop::PASSWORD {
        return json_error(StatusCode::UNAUTHORIZED, "invalid_credentials");
    }
    let token = random_hex();
    shop.state().tokens.insert(
        token.clone(),
        BearerToken {
            username: USERNAME.to_owned(),
            issued: Instant::now(),
        },
    );
    json_response(
        StatusCode::OK,
        json!({ "token": token, "token_type": "Bearer", "expires_in": TOKEN_TTL_SECS }),
    )
}

async fn api_products() -> Response {
    json_response(StatusCode::OK, json!(PRODUCTS))
}

#[derive(Deserialize)]
struct CartAdd {
    product_id: String,
    #[serde(default = "one")]
    qty: i64,
    #[serde(default)]
    cart_id: Option<String>,
}

fn one() -> i64 {
    1
}

async fn api_cart_add(State(shop): State<DemoShop>, headers: HeaderMap, body: Bytes) -> Response {
    let add: CartAdd = match parse_json(&body) {
        Ok(a) => a,
        Err(e) => return e.into_response(),
    };
    if product(&add.product_id).is_none() {
        return json_error(StatusCode::NOT_FOUND, "unknown_product");
    }
    let qty = match u32::try_from(add.qty) {
        Ok(q @ 1..=99) => q,
        _ => return json_error(StatusCode::UNPROCESSABLE_ENTITY, "invalid_qty"),
    };
    let user = shop.authenticated_user(&headers);
    let mut state = shop.state();
    match add.cart_id {
        Some(cart_id) => {
            let Some(cart) = state.carts.get_mut(&cart_id) else {
                return json_error(StatusCode::NOT_FOUND, "unknown_cart");
            };
            if cart.owner.is_some() && cart.owner != user {
                return json_error(StatusCode::NOT_FOUND, "unknown_cart");
            }
            match cart
                .items
                .iter_mut()
                .find(|i| i.product_id == add.product_id)
            {
                Some(item) => item.qty = item.qty.saturating_add(qty),
                None => cart.items.push(LineItem {
                    product_id: add.product_id,
                    qty,
                }),
            }
            json_response(StatusCode::OK, cart_json(&cart_id, cart))
        }
        None => {
            let cart_id = format!("cart-{}", random_hex());
            let cart = Cart {
                owner: user,
                items: vec![LineItem {
                    product_id: add.product_id,
                    qty,
                }],
            };
            let body = cart_json(&cart_id, &cart);
            state.carts.insert(cart_id, cart);
            json_response(StatusCode::CREATED, body)
        }
    }
}

async fn api_cart_get(
    State(shop): State<DemoShop>,
    headers: HeaderMap,
    Path(cart_id): Path<String>,
) -> Response {
    let user = shop.authenticated_user(&headers);
    let state = shop.state();
    match state.carts.get(&cart_id) {
        Some(cart) if cart.owner.is_none() || cart.owner == user => {
            json_response(StatusCode::OK, cart_json(&cart_id, cart))
        }
        _ => json_error(StatusCode::NOT_FOUND, "unknown_cart"),
    }
}

#[derive(Deserialize)]
struct CheckoutRequest {
    cart_id: String,
}

async fn api_checkout(State(shop): State<DemoShop>, headers: HeaderMap, body: Bytes) -> Response {
    let delay = shop.checkout_delay();
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    if shop.checkout_failing() {
        return json_error(StatusCode::SERVICE_UNAVAILABLE, "checkout_unavailable");
    }
    let request: CheckoutRequest = match parse_json(&body) {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    let user = shop.authenticated_user(&headers);
    let mut state = shop.state();
    match state.carts.get(&request.cart_id) {
        Some(cart) if cart.owner.is_none() || cart.owner == user => {
            if cart.items.is_empty() {
                return json_error(StatusCode::UNPROCESSABLE_ENTITY, "empty_cart");
            }
        }
        _ => return json_error(StatusCode::NOT_FOUND, "unknown_cart"),
    }
    let Some(cart) = state.carts.remove(&request.cart_id) else {
        return json_error(StatusCode::NOT_FOUND, "unknown_cart");
    };
    let mut order_id = format!("ord-{}", &random_hex()[..8]);
    while state.orders.contains_key(&order_id) {
        order_id = format!("ord-{}", &random_hex()[..8]);
    }
    let order = Order {
        owner: user,
        total_cents: total_cents(&cart.items),
        items: cart.items,
    };
    let body = order_json(&order_id, &order);
    tracing::debug!(%order_id, total_cents = order.total_cents, "demo shop: order confirmed");
    state.orders.insert(order_id, order);
    json_response(StatusCode::OK, body)
}

async fn api_order_get(
    State(shop): State<DemoShop>,
    headers: HeaderMap,
    Path(order_id): Path<String>,
) -> Response {
    let Some(user) = shop.authenticated_user(&headers) else {
        return json_error(StatusCode::UNAUTHORIZED, "unauthorized");
    };
    let state = shop.state();
    match state.orders.get(&order_id) {
        Some(order) if order.owner.as_deref() == Some(user.as_str()) => {
            json_response(StatusCode::OK, order_json(&order_id, order))
        }
        _ => json_error(StatusCode::NOT_FOUND, "unknown_order"),
    }
}

async fn api_me(State(shop): State<DemoShop>, headers: HeaderMap) -> Response {
    let Some(user) = shop.authenticated_user(&headers) else {
        return json_error(StatusCode::UNAUTHORIZED, "unauthorized");
    };
    let orders = shop
        .state()
        .orders
        .iter_newest_first()
        .filter(|(_, o)| o.owner.as_deref() == Some(user.as_str()))
        .count();
    json_response(
        StatusCode::OK,
        json!({ "username": user, "orders": orders }),
    )
}

// ---------------------------------------------------------------------------
// demo switches

/// Whether the peer may use the demo switches: loopback, or unknown (when the
/// router is served without connect info).
fn peer_allowed(extensions: &Extensions) -> bool {
    extensions
        .get::<ConnectInfo<SocketAddr>>()
        .is_none_or(|ConnectInfo(addr)| addr.ip().is_loopback())
}

#[derive(Deserialize)]
struct FailParams {
    fail: bool,
}

async fn demo_checkout_switch(
    State(shop): State<DemoShop>,
    extensions: Extensions,
    params: Result<Query<FailParams>, QueryRejection>,
) -> Response {
    if !peer_allowed(&extensions) {
        return json_error(StatusCode::FORBIDDEN, "loopback_only");
    }
    let Ok(Query(params)) = params else {
        return json_error(StatusCode::BAD_REQUEST, "expected ?fail=true|false");
    };
    shop.set_checkout_failing(params.fail);
    tracing::info!(failing = params.fail, "demo shop: checkout failing switch");
    json_response(
        StatusCode::OK,
        json!({ "checkout_failing": shop.checkout_failing() }),
    )
}

#[derive(Deserialize)]
struct DelayParams {
    ms: u64,
}

async fn demo_checkout_delay(
    State(shop): State<DemoShop>,
    extensions: Extensions,
    params: Result<Query<DelayParams>, QueryRejection>,
) -> Response {
    if !peer_allowed(&extensions) {
        return json_error(StatusCode::FORBIDDEN, "loopback_only");
    }
    let ms = match params {
        Ok(Query(DelayParams { ms })) if ms <= MAX_DEMO_DELAY_MS => ms,
        _ => {
            return json_error(
                StatusCode::UNPROCESSABLE_ENTITY,
                "expected ?ms=N with 0 <= N <= 60000",
            );
        }
    };
    shop.set_checkout_delay(Duration::from_millis(ms));
    tracing::info!(ms, "demo shop: checkout delay");
    json_response(StatusCode::OK, json!({ "checkout_delay_ms": ms }))
}

async fn not_found(uri: Uri) -> Response {
    let path = uri.path();
    if path == "/api" || path.starts_with("/api/") {
        json_error(StatusCode::NOT_FOUND, "not_found")
    } else {
        (
            StatusCode::NOT_FOUND,
            [(CONTENT_TYPE, "text/plain; charset=utf-8")],
            "Not found\n",
        )
            .into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::StatusCode as S;
    use reqwest::header::LOCATION as LOC;

    struct Running {
        base: String,
        shop: DemoShop,
        stop: Option<tokio::sync::oneshot::Sender<()>>,
        task: tokio::task::JoinHandle<std::io::Result<()>>,
    }

    async fn start() -> Running {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let shop = DemoShop::new();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(serve(listener, shop.clone(), async {
            let _ = rx.await;
        }));
        Running {
            base,
            shop,
            stop: Some(tx),
            task,
        }
    }

    fn client() -> reqwest::Client {
        reqwest::Client::builder()
            .cookie_store(true)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap()
    }

    fn csrf_from(html: &str) -> String {
        let marker = "name=\"csrf_token\" value=\"";
        let start = html.find(marker).expect("csrf field") + marker.len();
        let len = html[start..].find('"').unwrap();
        html[start..start + len].to_owned()
    }

    async fn login_form(c: &reqwest::Client, base: &str) -> String {
        let r = c.get(format!("{base}/login")).send().await.unwrap();
        assert_eq!(r.status(), S::OK);
        assert_eq!(
            r.headers()[CONTENT_TYPE.as_str()],
            "text/html; charset=utf-8"
        );
        let set_cookie = r.headers()[SET_COOKIE.as_str()]
            .to_str()
            .unwrap()
            .to_owned();
        assert!(set_cookie.starts_with("csrf="), "{set_cookie}");
        assert!(set_cookie.ends_with("; Path=/; HttpOnly; SameSite=Lax"));
        let body = r.text().await.unwrap();
        for needle in [
            "Log in",
            "<form method=\"post\" action=\"/login\" id=\"login-form\">",
            "<input name=\"username\" id=\"username\"",
            "<input type=\"password\" name=\"password\" id=\"password\"",
            "<button type=\"submit\" id=\"login-button\">Log in</button>",
        ] {
            assert!(body.contains(needle), "missing {needle}");
        }
        csrf_from(&body)
    }

    async fn post_login(
        c: &reqwest::Client,
        base: &str,
        token: &str,
        pw: &str,
    ) -> reqwest::Response {
        c.post(format!("{base}/login"))
            .form(&[
                ("csrf_token", token),
                ("username", "alice"),
                ("password", pw),
            ])
            .send()
            .await
            .unwrap()
    }

    async fn json_of(r: reqwest::Response) -> Value {
        assert_eq!(r.headers()[CONTENT_TYPE.as_str()], "application/json");
        r.json().await.unwrap()
    }

    #[tokio::test]
    async fn full_html_flow() {
        let srv = start().await;
        let (base, c) = (&srv.base, client());
        let home = c
            .get(format!("{base}/"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        for link in ["href=\"/login\"", "href=\"/shop\"", "href=\"/account\""] {
            assert!(home.contains(link));
        }
        let token = login_form(&c, base).await;
        let r = post_login(&c, base, &token, DemoShop::PASSWORD).await;
        assert_eq!(r.status(), S::SEE_OTHER);
        assert_eq!(r.headers()[LOC], "/account");
        let sc = r.headers()[SET_COOKIE.as_str()].to_str().unwrap();
        assert!(sc.starts_with("session=") && sc.ends_with("; Path=/; HttpOnly; SameSite=Lax"));

        let acct = c.get(format!("{base}/account")).send().await.unwrap();
        assert_eq!(acct.status(), S::OK);
        let acct = acct.text().await.unwrap();
        assert!(acct.contains("<h1>Your account</h1>") && acct.contains("Signed in as alice"));
        assert!(acct.contains("<p id=\"no-orders\">No orders yet</p>"));

        let r = c
            .post(format!("{base}/api/cart"))
            .json(&json!({"product_id": "sku-1", "qty": 1}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), S::CREATED);
        let cart = json_of(r).await;
        let cart_id = cart["cart_id"].as_str().unwrap().to_owned();
        assert!(cart_id.starts_with("cart-"));
        assert_eq!(cart["items"], json!([{"product_id": "sku-1", "qty": 1}]));
        assert_eq!(cart["total_cents"], 2500);

        let r = c
            .post(format!("{base}/api/cart"))
            .json(&json!({"product_id": "sku-3", "qty": 2, "cart_id": cart_id}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), S::OK);
        assert_eq!(json_of(r).await["total_cents"], 2500 + 2 * 900);
        let r = c
            .get(format!("{base}/api/cart/{cart_id}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), S::OK);

        let r = c
            .post(format!("{base}/api/checkout"))
            .json(&json!({"cart_id": cart_id}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), S::OK);
        let order = json_of(r).await;
        assert_eq!(order["status"], "confirmed");
        assert_eq!(order["total_cents"], 4300);
        let order_id = order["order_id"].as_str().unwrap().to_owned();
        assert_eq!(order_id.len(), 12);
        assert!(order_id.starts_with("ord-"));
        assert!(
            order_id[4..]
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        );

        let acct = c
            .get(format!("{base}/account"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(acct.contains("<ul id=\"orders\">"));
        assert!(acct.contains(&format!(
            "<li class=\"order\" data-order-id=\"{order_id}\">{order_id}: confirmed, 3 items</li>"
        )));
        let me = json_of(c.get(format!("{base}/api/me")).send().await.unwrap()).await;
        assert_eq!(me, json!({"username": "alice", "orders": 1}));

        // The cart is consumed.
        let r = c
            .post(format!("{base}/api/checkout"))
            .json(&json!({"cart_id": cart_id}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), S::NOT_FOUND);
        assert_eq!(json_of(r).await, json!({"error": "unknown_cart"}));

        let r = c.post(format!("{base}/logout")).send().await.unwrap();
        assert_eq!(r.status(), S::SEE_OTHER);
        assert_eq!(r.headers()[LOC], "/login");
        let r = c.get(format!("{base}/account")).send().await.unwrap();
        assert_eq!(r.status(), S::SEE_OTHER);
    }

    #[tokio::test]
    async fn csrf_is_checked() {
        let srv = start().await;
        let base = &srv.base;
        // No cookie, no token.
        let r = post_login(&client(), base, "", DemoShop::PASSWORD).await;
        assert_eq!(r.status(), S::FORBIDDEN);
        assert!(r.text().await.unwrap().contains("Invalid CSRF token"));

        let c = client();
        let token = login_form(&c, base).await;
        let r = post_login(
            &c,
            base,
            "0123456789abcdef0123456789abcdef",
            DemoShop::PASSWORD,
        )
        .await;
        assert_eq!(r.status(), S::FORBIDDEN);
        // A token is bound to the cookie it was issued with.
        let other = client();
        let _ = login_form(&other, base).await;
        let r = post_login(&other, base, &token, DemoShop::PASSWORD).await;
        assert_eq!(r.status(), S::FORBIDDEN);
        // ... and single use (the failed attempt above consumed it).
        let r = post_login(&c, base, &token, DemoShop::PASSWORD).await;
        assert_eq!(r.status(), S::FORBIDDEN);
        // Two forms from the same browser both work.
        let t1 = login_form(&c, base).await;
        let t2 = login_form(&c, base).await;
        assert_eq!(
            post_login(&c, base, &t1, DemoShop::PASSWORD).await.status(),
            S::SEE_OTHER
        );
        assert_eq!(
            post_login(&c, base, &t2, DemoShop::PASSWORD).await.status(),
            S::SEE_OTHER
        );
        assert_eq!(
            post_login(&c, base, &t2, DemoShop::PASSWORD).await.status(),
            S::FORBIDDEN
        );
    }

    #[tokio::test]
    async fn wrong_password_and_account_redirect() {
        let srv = start().await;
        let (base, c) = (&srv.base, client());
        let r = c.get(format!("{base}/account")).send().await.unwrap();
        assert_eq!(r.status(), S::SEE_OTHER);
        assert_eq!(r.headers()[LOC], "/login");

        let token = login_form(&c, base).await;
        let r = post_login(&c, base, &token, "hunter2").await;
        assert_eq!(r.status(), S::UNAUTHORIZED);
        assert!(r.headers().get(SET_COOKIE.as_str()).is_some());
        let body = r.text().await.unwrap();
        assert!(body.contains("Invalid user name or password"));
        let fresh = csrf_from(&body);
        assert_ne!(fresh, token);
        let r = c.get(format!("{base}/account")).send().await.unwrap();
        assert_eq!(r.status(), S::SEE_OTHER);
        let r = post_login(&c, base, &fresh, DemoShop::PASSWORD).await;
        assert_eq!(r.status(), S::SEE_OTHER);
        assert_eq!(
            c.get(format!("{base}/account"))
                .send()
                .await
                .unwrap()
                .status(),
            S::OK
        );
    }

    #[tokio::test]
    async fn bearer_token_flow() {
        let srv = start().await;
        let (base, c) = (&srv.base, client());
        let r = c
            .post(format!("{base}/api/login"))
            .json(&json!({"username": "alice", "password": "nope"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), S::UNAUTHORIZED);
        assert_eq!(json_of(r).await, json!({"error": "invalid_credentials"}));

        let r = c
            .post(format!("{base}/api/login"))
            .json(&json!({"username": "alice", "password": DemoShop::PASSWORD}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), S::OK);
        let login = json_of(r).await;
        assert_eq!(login["token_type"], "Bearer");
        assert_eq!(login["expires_in"], 3600);
        let token = login["token"].as_str().unwrap().to_owned();
        assert!(token.len() >= 32);

        let products = json_of(c.get(format!("{base}/api/products")).send().await.unwrap()).await;
        assert_eq!(
            products,
            json!([{"id":"sku-1","name":"Teapot","price_cents":2500},
                   {"id":"sku-2","name":"Tea cups (4)","price_cents":1800},
                   {"id":"sku-3","name":"Loose leaf tea","price_cents":900}])
        );

        let r = c
            .post(format!("{base}/api/cart"))
            .bearer_auth(&token)
            .json(&json!({"product_id": "sku-2", "qty": 2}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), S::CREATED);
        let cart_id = json_of(r).await["cart_id"].as_str().unwrap().to_owned();
        // A user's cart is invisible to others.
        let r = c
            .get(format!("{base}/api/cart/{cart_id}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), S::NOT_FOUND);
        let r = c
            .post(format!("{base}/api/checkout"))
            .bearer_auth(&token)
            .json(&json!({"cart_id": cart_id}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), S::OK);
        let order_id = json_of(r).await["order_id"].as_str().unwrap().to_owned();

        let r = c
            .get(format!("{base}/api/orders/{order_id}"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), S::OK);
        let order = json_of(r).await;
        assert_eq!(order["order_id"], order_id.as_str());
        assert_eq!(order["total_cents"], 3600);
        let r = c
            .get(format!("{base}/api/orders/{order_id}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), S::UNAUTHORIZED);
        assert_eq!(json_of(r).await, json!({"error": "unauthorized"}));
        let r = c
            .get(format!("{base}/api/orders/ord-00000000"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), S::NOT_FOUND);
        let r = c
            .get(format!("{base}/api/me"))
            .bearer_auth("bogus")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), S::UNAUTHORIZED);
        let me = json_of(
            c.get(format!("{base}/api/me"))
                .bearer_auth(&token)
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(me["orders"], 1);
        // A bearer token also opens the account page.
        let r = c
            .get(format!("{base}/account"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), S::OK);
        assert!(r.text().await.unwrap().contains(&order_id));

        // Anonymous orders are not visible through the API.
        let r = c
            .post(format!("{base}/api/cart"))
            .json(&json!({"product_id": "sku-1"}))
            .send()
            .await
            .unwrap();
        let cart_id = json_of(r).await["cart_id"].as_str().unwrap().to_owned();
        let r = c
            .post(format!("{base}/api/checkout"))
            .json(&json!({"cart_id": cart_id}))
            .send()
            .await
            .unwrap();
        let anon = json_of(r).await["order_id"].as_str().unwrap().to_owned();
        let r = c
            .get(format!("{base}/api/orders/{anon}"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), S::NOT_FOUND);
    }

    #[tokio::test]
    async fn failing_switch_and_delay() {
        let srv = start().await;
        let (base, c) = (&srv.base, client());
        let new_cart = || async {
            let r = c
                .post(format!("{base}/api/cart"))
                .json(&json!({"product_id": "sku-1", "qty": 1}))
                .send()
                .await
                .unwrap();
            json_of(r).await["cart_id"].as_str().unwrap().to_owned()
        };
        let checkout = |cart_id: String| {
            c.post(format!("{base}/api/checkout"))
                .json(&json!({ "cart_id": cart_id }))
                .send()
        };
        let cart = new_cart().await;
        let r = c
            .post(format!("{base}/-/demo/checkout?fail=true"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), S::OK);
        assert_eq!(json_of(r).await, json!({"checkout_failing": true}));
        assert!(srv.shop.checkout_failing());
        let r = checkout(cart.clone()).await.unwrap();
        assert_eq!(r.status(), S::SERVICE_UNAVAILABLE);
        assert_eq!(json_of(r).await, json!({"error": "checkout_unavailable"}));

        let r = c
            .post(format!("{base}/-/demo/checkout?fail=false"))
            .send()
            .await
            .unwrap();
        assert_eq!(json_of(r).await, json!({"checkout_failing": false}));
        // The failed attempt did not consume the cart.
        assert_eq!(checkout(cart).await.unwrap().status(), S::OK);

        srv.shop.set_checkout_failing(true);
        assert_eq!(
            checkout(new_cart().await).await.unwrap().status(),
            S::SERVICE_UNAVAILABLE
        );
        srv.shop.set_checkout_failing(false);
        assert_eq!(checkout(new_cart().await).await.unwrap().status(), S::OK);

        let r = c
            .post(format!("{base}/-/demo/checkout?fail=maybe"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), S::BAD_REQUEST);
        let r = c
            .post(format!("{base}/-/demo/checkout-delay?ms=60001"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), S::UNPROCESSABLE_ENTITY);
        let r = c
            .post(format!("{base}/-/demo/checkout-delay?ms=250"))
            .send()
            .await
            .unwrap();
        assert_eq!(json_of(r).await, json!({"checkout_delay_ms": 250}));
        let cart = new_cart().await;
        let started = Instant::now();
        assert_eq!(checkout(cart).await.unwrap().status(), S::OK);
        assert!(started.elapsed() >= Duration::from_millis(250));
        srv.shop.set_checkout_delay(Duration::ZERO);
    }

    #[tokio::test]
    async fn bad_input_never_panics() {
        let srv = start().await;
        let (base, c) = (&srv.base, client());
        let post = |path: &'static str, body: &'static str| {
            c.post(format!("{base}{path}"))
                .header(CONTENT_TYPE.as_str(), "application/json")
                .body(body)
                .send()
        };
        for path in ["/api/cart", "/api/checkout", "/api/login"] {
            let r = post(path, "{not json").await.unwrap();
            assert_eq!(r.status(), S::BAD_REQUEST, "{path}");
            assert_eq!(json_of(r).await["error"], "invalid_json");
            let r = post(path, "{\"qty\": \"x\"}").await.unwrap();
            assert_eq!(r.status(), S::UNPROCESSABLE_ENTITY, "{path}");
            assert_eq!(json_of(r).await["error"], "invalid_request");
        }
        let r = post("/api/cart", r#"{"product_id":"sku-9","qty":1}"#)
            .await
            .unwrap();
        assert_eq!(r.status(), S::NOT_FOUND);
        assert_eq!(json_of(r).await, json!({"error": "unknown_product"}));
        for qty in ["0", "100", "-5", "99999999999999"] {
            let body = format!(r#"{{"product_id":"sku-1","qty":{qty}}}"#);
            let r = c
                .post(format!("{base}/api/cart"))
                .body(body)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), S::UNPROCESSABLE_ENTITY, "qty {qty}");
        }
        let r = post(
            "/api/cart",
            r#"{"product_id":"sku-1","qty":1,"cart_id":"cart-nope"}"#,
        )
        .await
        .unwrap();
        assert_eq!(r.status(), S::NOT_FOUND);
        let r = post("/api/checkout", r#"{"cart_id":"cart-nope"}"#)
            .await
            .unwrap();
        assert_eq!(r.status(), S::NOT_FOUND);
        let r = c
            .get(format!("{base}/api/cart/cart-nope"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), S::NOT_FOUND);
        let r = c
            .get(format!("{base}/api/nothing/here"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), S::NOT_FOUND);
        assert_eq!(json_of(r).await, json!({"error": "not_found"}));
        let r = c.get(format!("{base}/nothing")).send().await.unwrap();
        assert_eq!(r.status(), S::NOT_FOUND);
        assert_eq!(
            r.headers()[CONTENT_TYPE.as_str()],
            "text/plain; charset=utf-8"
        );
        let r = c
            .post(format!("{base}/login"))
            .header(CONTENT_TYPE.as_str(), "text/plain")
            .body("garbage")
            .send()
            .await
            .unwrap();
        assert!(r.status().is_client_error());
        let r = c
            .get(format!("{base}/api/me"))
            .header("cookie", "session=\"\"; ;=; csrf")
            .header("authorization", "Bearer")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), S::UNAUTHORIZED);

        let shop_page = c
            .get(format!("{base}/shop"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        for needle in [
            "<div id=\"products\">",
            "<span id=\"cart-count\">0</span>",
            "<button id=\"checkout\" disabled>",
            "<div id=\"result\">",
            "fetch('/api/products'",
            "credentials: 'same-origin'",
            "'/api/checkout'",
            "300);",
        ] {
            assert!(shop_page.contains(needle), "shop page lacks {needle}");
        }
    }

    #[tokio::test]
    async fn graceful_shutdown() {
        let mut srv = start().await;
        let c = client();
        assert_eq!(
            c.get(format!("{}/", srv.base))
                .send()
                .await
                .unwrap()
                .status(),
            S::OK
        );
        drop(c);
        srv.stop.take().unwrap().send(()).unwrap();
        tokio::time::timeout(Duration::from_secs(5), &mut srv.task)
            .await
            .expect("server stopped")
            .unwrap()
            .unwrap();
    }

    #[test]
    fn bounded_evicts_oldest() {
        let mut b = Bounded::with_capacity(3);
        for i in 0..5 {
            b.insert(format!("k{i}"), i);
        }
        assert_eq!(b.map.len(), 3);
        assert!(b.get("k0").is_none() && b.get("k1").is_none());
        assert_eq!(b.remove("k3"), Some(3));
        b.insert("k5".into(), 5);
        b.insert("k6".into(), 6);
        let newest: Vec<_> = b
            .iter_newest_first()
            .map(|(k, v)| (k.to_owned(), *v))
            .collect();
        assert_eq!(
            newest,
            vec![("k6".into(), 6), ("k5".into(), 5), ("k4".into(), 4)]
        );
        assert_eq!(b.order.len(), 3);
    }
}
