#pragma once

// Reads the authorization tables of docs/authorization.md (for tests): every table row whose
// first cell is a backticked rule id, with the roles whose column holds "✓".

#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "common/policy.h"
#include "common/result.h"

namespace parley::policy::testing {

struct DocumentedRule {
  std::string id;
  std::string call;
  RoleSet allowed;
  int line = 0;
};

inline std::string trimCell(std::string s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '`')) s.erase(s.begin());
  while (!s.empty() && (s.back() == ' ' || s.back() == '`')) s.pop_back();
  return s;
}

// The columns after Rule and Call, in this order.
inline constexpr Role kDocumentedColumns[] = {Role::kAdmin,         Role::kAgentManager,
                                              Role::kAgent,         Role::kFaasAdmin,
                                              Role::kFaasDeveloper, Role::kFaasInvocation};

inline Result<std::vector<DocumentedRule>> readRoleTables(const std::string& path) {
  std::ifstream in(path);
  if (!in) return notFound("cannot read " + path);
  std::vector<DocumentedRule> out;
  std::string line;
  int n = 0;
  while (std::getline(in, line)) {
    ++n;
    if (!line.starts_with("| `")) continue;
    std::vector<std::string> cells;
    std::stringstream ss(line.substr(1));
    std::string cell;
    while (std::getline(ss, cell, '|')) cells.push_back(trimCell(cell));
    if (!cells.empty() && cells.back().empty()) cells.pop_back();
    // Only the role tables have 8 columns.
    if (cells.size() != 2 + std::size(kDocumentedColumns)) continue;
    DocumentedRule r;
    r.id = cells[0];
    r.call = cells[1];
    r.line = n;
    for (std::size_t i = 0; i < std::size(kDocumentedColumns); ++i) {
      const std::string& c = cells[2 + i];
      if (c == "✓") {
        r.allowed.add(kDocumentedColumns[i]);
      } else if (c != "—") {
        return invalid(path + ":" + std::to_string(n) + ": a role cell must be ✓ or —, not '" + c +
                       "'");
      }
    }
    out.push_back(std::move(r));
  }
  return out;
}

}  // namespace parley::policy::testing
