#include "functions/runtime.h"

#include "functions/engine/engine.h"

namespace parley::functions {

FunctionRuntime::FunctionRuntime(std::unique_ptr<engine::Engine> engine)
    : engine_(std::move(engine)) {}

FunctionRuntime::~FunctionRuntime() = default;

Result<std::unique_ptr<FunctionRuntime>> FunctionRuntime::create(RuntimeOptions options,
                                                                 FunctionHost& host,
                                                                 const Clock& clock) {
  auto e = engine::Engine::create(std::move(options), host, clock);
  if (!e) return std::unexpected(e.error());
  return std::unique_ptr<FunctionRuntime>(new FunctionRuntime(std::move(*e)));
}

void FunctionRuntime::readChannelsOn(std::vector<boost::asio::io_context*> contexts) {
  engine_->readChannelsOn(std::move(contexts));
}

void FunctionRuntime::readChannelsOnOwnThreads() { engine_->readChannelsOnOwnThreads(); }

Status FunctionRuntime::checkCode(std::string_view code) { return engine_->check(code); }

Status FunctionRuntime::deploy(const AccountId& account, const FunctionId& id, DeployedCode code) {
  return engine_->deploy(account, id, std::move(code));
}

void FunctionRuntime::undeploy(const AccountId& account, const FunctionId& id) {
  engine_->undeploy(account, id);
}

bool FunctionRuntime::isDeployed(const AccountId& account, const FunctionId& id) const {
  return engine_->isDeployed(account, id);
}

void FunctionRuntime::invoke(InvokeRequest request, std::function<void(InvokeResult)> done) {
  engine_->invoke(std::move(request), InvokeMode::kProduction, std::move(done));
}

void FunctionRuntime::invoke(InvokeRequest request, InvokeMode mode,
                             std::function<void(InvokeResult)> done) {
  engine_->invoke(std::move(request), mode, std::move(done));
}

void FunctionRuntime::invokeCode(const AccountId& account, std::string code,
                                 std::vector<store::EnvVar> env, InvokeRequest request,
                                 std::function<void(InvokeResult)> done) {
  engine_->invokeCode(account, std::move(code), std::move(env), std::move(request),
                      std::move(done));
}

RuntimeStats FunctionRuntime::stats() const { return engine_->stats(); }

std::string FunctionRuntime::prometheusText() const { return engine_->prometheusText(); }

const engine::AddressPolicy& FunctionRuntime::addressPolicy() const {
  return engine_->addressPolicy();
}

}  // namespace parley::functions
