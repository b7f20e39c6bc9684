#include "functions/memory_context.h"

#include "common/json.h"

namespace parley::functions {

namespace bj = boost::json;

Result<std::string> MemoryContext::call(const std::string& op, const std::string& args_json) {
  auto args = json::parseObject(args_json);
  if (!args) return std::unexpected(args.error());
  std::string ns = json::getString(*args, "namespace");
  std::string session = json::getString(*args, "sessionId", "__default");
  MutexLock lock(mu_);
  if (op == "getListOfNamespaces") {
    bj::array out;
    for (auto& [name, _] : namespaces_) out.push_back(bj::object{{"name", name}, {"createdAt", 0}});
    return json::dump(out);
  }
  if (ns.empty()) return invalid("namespace is required");
  if (op == "createNamespace") {
    namespaces_[ns];
    return json::dump(bj::object{{"name", ns}, {"createdAt", 0}});
  }
  auto it = namespaces_.find(ns);
  if (it == namespaces_.end()) return notFound("namespace '" + ns + "' does not exist");
  auto& sessions = it->second;
  if (op == "deleteNamespace") {
    namespaces_.erase(it);
    return std::string("null");
  }
  if (op == "set" || op == "update") {
    auto props = json::requireObject(*args, "properties");
    if (!props) return std::unexpected(props.error());
    auto& s = sessions[session];
    if (op == "set") s.clear();
    for (auto& [k, v] : **props) s[k] = v;
    return std::string("null");
  }
  if (op == "getAll") return json::dump(sessions[session]);
  if (op == "getSelected") {
    bj::object out;
    if (auto* names = args->if_contains("names"); names && names->is_array())
      for (auto& n : names->as_array())
        if (n.is_string())
          if (auto* v = sessions[session].if_contains(n.as_string())) out[n.as_string()] = *v;
    return json::dump(out);
  }
  std::string name = json::getString(*args, "name");
  if (op == "get") {
    auto* v = sessions[session].if_contains(name);
    return v ? json::dump(*v) : std::string("null");
  }
  if (op == "deleteProperty") {
    sessions[session].erase(name);
    return std::string("null");
  }
  if (op == "deleteSession") {
    sessions.erase(session);
    return std::string("null");
  }
  if (op == "getListOfSessions") {
    bj::array out;
    for (auto& [id, _] : sessions) out.push_back(bj::string(id));
    return json::dump(out);
  }
  return invalid("unknown context operation '" + op + "'");
}

}  // namespace parley::functions
