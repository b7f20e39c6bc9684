#pragma once

// LimitPeers for tests: the nodes of one in-process "cluster". Each node() is one node's
// LimitPeers; an event one node publishes is handed, on the publishing thread, to the receivers
// of the same name on every other node (never back to its own). `cut(i)` stops node i from
// sending and receiving, as a node cut from the bus.

#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "common/limit_peers.h"

namespace parley::testing {

class LinkedLimitPeers {
 public:
  explicit LinkedLimitPeers(int nodes) {
    for (int i = 0; i < nodes; ++i) nodes_.push_back(std::make_shared<Node>(this, i));
  }
  std::shared_ptr<LimitPeers> node(int i) { return nodes_.at(static_cast<std::size_t>(i)); }
  void cut(int i) {
    std::lock_guard lock(mu_);
    nodes_.at(static_cast<std::size_t>(i))->cut = true;
  }

 private:
  struct Node final : LimitPeers {
    Node(LinkedLimitPeers* l, int i) : links(l), index(i) {}
    void publish(std::string_view name, std::string event) override {
      std::vector<Receiver> to;
      {
        std::lock_guard lock(links->mu_);
        if (cut) return;
        for (const auto& n : links->nodes_)
          if (n.get() != this && !n->cut)
            if (auto it = n->receivers.find(std::string(name)); it != n->receivers.end())
              to.push_back(it->second);
      }
      for (const auto& r : to) r(event);
    }
    void attach(const std::string& name, Receiver receiver) override {
      std::lock_guard lock(links->mu_);
      receivers[name] = std::move(receiver);
    }
    void detach(const std::string& name) override {
      std::lock_guard lock(links->mu_);
      receivers.erase(name);
    }
    LinkedLimitPeers* links;
    int index;
    bool cut = false;
    std::map<std::string, Receiver> receivers;
  };
  std::mutex mu_;
  std::vector<std::shared_ptr<Node>> nodes_;
};

}  // namespace parley::testing
