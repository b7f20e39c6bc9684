#include "server/blocking_pool.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>
#include <boost/asio/post.hpp>
#include <boost/asio/thread_pool.hpp>
#include <exception>
#include <functional>
#include <utility>

#include "common/thread_name.h"

namespace parley::server {
namespace {

namespace asio = boost::asio;

class BlockingPoolImpl final : public BlockingPool {
 public:
  explicit BlockingPoolImpl(int n) : pool_(static_cast<std::size_t>(std::max(1, n))) {
    nameThreads([this](auto task) { asio::post(pool_, std::move(task)); },
                static_cast<std::size_t>(std::max(1, n)), "net-blocking");
  }
  ~BlockingPoolImpl() override { join(); }
  // BlockingExecutor
  void run(std::function<void()> work) override {
    asio::post(pool_, [w = std::move(work)] {
      try {
        w();
      } catch (const std::exception& e) {
        spdlog::error("blocking work: unexpected exception: {}", e.what());
      } catch (...) {
        spdlog::error("blocking work: unexpected exception");
      }
    });
  }
  // BlockingPool
  void join() override {
    if (joined_.exchange(true)) return;
    pool_.join();
  }

 private:
  asio::thread_pool pool_;
  std::atomic<bool> joined_{false};
};

}  // namespace

std::unique_ptr<BlockingPool> makeBlockingPool(int threads) {
  return std::make_unique<BlockingPoolImpl>(threads);
}

}  // namespace parley::server
