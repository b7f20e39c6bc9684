#include "connector/function_versions.h"

#include <fmt/format.h>

#include <charconv>

namespace parley::connector {

namespace bj = boost::json;

namespace {

constexpr int kDeploymentsRead = 20;

bool live(const store::FunctionRecord& f) {
  return f.state == store::FunctionState::kProductive ||
         f.state == store::FunctionState::kModified || f.state == store::FunctionState::kBuildError;
}

FunctionVersion draftOf(const store::FunctionRecord& f) {
  return FunctionVersion{"draft", f.version, "", f.code, f.env};
}

FunctionVersion deployedOf(const store::Deployment& d, std::string label) {
  return FunctionVersion{std::move(label), d.function_version, d.uuid, d.code, d.env};
}

std::string choices(const store::FunctionRecord& f, const std::vector<store::Deployment>& ds) {
  std::string s = fmt::format("\"draft\" (version {})", f.version);
  if (live(f)) s += ", \"deployed\"";
  for (const auto& d : ds)
    if (d.state == store::DeploymentState::kProductive)
      s += fmt::format(", {}", d.function_version);
  return s;
}

}  // namespace

bj::object FunctionVersion::toJson() const {
  return bj::object{{"label", label},
                    {"version", version},
                    {"deploymentId", deployment.empty() ? bj::value() : bj::value(deployment)}};
}

Result<FunctionVersion> resolveFunctionVersion(store::FunctionStore& functions,
                                               const AccountId& acc, const FunctionId& fn,
                                               const bj::value& spec) {
  auto f = functions.getFunction(acc, fn);
  if (!f)
    return notFound(
        fmt::format("the bot's function {} does not exist; edit the bot to use an "
                    "existing function",
                    fn.str()));
  if (spec.is_null() || (spec.is_string() && spec.as_string() == "draft")) return draftOf(*f);
  auto ds = functions.listDeployments(acc, fn, kDeploymentsRead);
  if (!ds) return std::unexpected(ds.error());
  if (spec.is_string() && spec.as_string() == "deployed") {
    if (live(*f))
      for (const auto& d : *ds)
        if (d.state == store::DeploymentState::kProductive) return deployedOf(d, "deployed");
    return notFound(
        fmt::format("function {} is not deployed; choose one of: {}", f->name, choices(*f, *ds)));
  }
  std::optional<std::int64_t> number;
  if (spec.is_int64()) number = spec.as_int64();
  if (spec.is_uint64()) number = static_cast<std::int64_t>(spec.as_uint64());
  if (spec.is_string()) {
    std::string_view s = spec.as_string();
    for (const auto& d : *ds)
      if (d.uuid == s) {
        if (d.state != store::DeploymentState::kProductive)
          return invalid(
              fmt::format("deployment {} of {} is {}: only a deployment that built "
                          "(Productive) can run",
                          d.uuid, f->name, store::deploymentStateName(d.state)));
        return deployedOf(d, fmt::format("v{}", d.function_version));
      }
    std::string_view digits = s.starts_with('v') || s.starts_with('V') ? s.substr(1) : s;
    std::int64_t n = 0;
    auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), n);
    if (!digits.empty() && ec == std::errc() && end == digits.data() + digits.size()) number = n;
  } else if (!number) {
    return invalid(
        "'functionVersion' must be \"draft\", \"deployed\", a version number or a deployment "
        "id");
  }
  if (number) {
    for (const auto& d : *ds)
      if (d.function_version == *number && d.state == store::DeploymentState::kProductive)
        return deployedOf(d, fmt::format("v{}", d.function_version));
    if (*number == f->version) return draftOf(*f);
  }
  return notFound(fmt::format(
      "function {} has no version {}; choose one of: {}", f->name,
      spec.is_string() ? std::string(spec.as_string()) : bj::serialize(spec), choices(*f, *ds)));
}

functions::Invoker invokerOf(const api::Caller& caller) {
  functions::Invoker inv;
  inv.kind = functions::InvokerKind::kUser;
  inv.user = caller.user;
  inv.login_name = caller.login_name;
  inv.secret_writes = caller.hasRole("ADMIN") || caller.hasRole("FAAS_ADMIN")
                          ? functions::SecretWrites::kAllowed
                          : functions::SecretWrites::kRefused;
  return inv;
}

Result<store::Channel> parseChannel(const bj::value& v) {
  if (v.is_null()) return store::Channel::kMessaging;
  std::string c = v.is_string() ? std::string(v.as_string()) : std::string();
  for (auto& ch : c) ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
  if (c == "MESSAGING") return store::Channel::kMessaging;
  if (c == "CHAT") return store::Channel::kChat;
  return invalid("'channel' must be \"MESSAGING\" or \"CHAT\"");
}

}  // namespace parley::connector
