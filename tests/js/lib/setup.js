'use strict';
// Common setup: a demo server, an admin session, and a fresh skill + bot user for the test.
const crypto = require('crypto');
const { login, rest } = require('./server');

async function adminSession(srv) {
  const d = srv.demo;
  const s = await login(srv, d.account, d.admin.username, d.admin.password);
  return { account: d.account, bearer: s.bearer, login: s };
}

async function createSkill(srv, admin, name) {
  const r = await rest(srv, admin.bearer, 'POST', admin.account, 'skills', { name });
  if (r.status !== 201) throw new Error(`create skill failed: ${r.status} ${r.text}`);
  return r.json.id;
}

async function createUser(srv, admin, { loginName, type = 'BOT', skills = [], roles = ['AGENT'] }) {
  const password = crypto.randomBytes(9).toString('hex');
  const r = await rest(srv, admin.bearer, 'POST', admin.account, 'users', {
    loginName, password, roles, type, skills, maxOpenConversations: 100,
  });
  if (r.status !== 201) throw new Error(`create user failed: ${r.status} ${r.text}`);
  return { id: r.json.id, pid: r.json.pid, loginName, password };
}

module.exports = { adminSession, createSkill, createUser };
