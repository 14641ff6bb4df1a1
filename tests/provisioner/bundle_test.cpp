// OCI runtime bundles: the user resolved as runc's libcontainer/user
// resolves it, config.json made from the image config, the bundle's life
// (recorded, refused when its directory exists, removed by destroy and by
// recover of a container that is gone), and Debian's runc running what the
// image says, with the overlay and the copy backend.

#include <rapidjson/document.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include <gtest/gtest.h>

#include "actors/random.hpp"
#include "actors/runtime.hpp"
#include "fetcher/manifest.hpp"
#include "messages/container.pb.h"
#include "provisioner/bundle.hpp"
#include "provisioner/provisioner.hpp"
#include "testkit/files.hpp"
#include "testkit/image_builder.hpp"
#include "testkit/real_registry.hpp"
#include "tests/provisioner/helpers.hpp"
#include "tests/support/await.hpp"
#include "tests/support/temp_dir.hpp"

namespace prov::provisioner {
namespace {

namespace fs = std::filesystem;
using testing::TarEntry;

constexpr const char* kPasswd =
    "root:x:0:0:root:/root:/bin/sh\n"
    "daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n"
    "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"
    "app:x:1000:1000::/home/app:/bin/sh\n";
constexpr const char* kGroup =
    "root:x:0:\n"
    "daemon:x:1:\n"
    "wheel:x:10:root,app\n"
    "audio:x:29:app\n"
    "app:x:1000:\n"
    "nogroup:x:65534:\n";

ExecUser resolved(const std::string& user, const std::optional<std::string>& passwd = std::string(kPasswd),
                  const std::optional<std::string>& group = std::string(kGroup)) {
  auto u = resolveExecUser(user, passwd, group);
  EXPECT_TRUE(u.isSome()) << user << ": " << (u.isError() ? u.error().message : "");
  return u.isSome() ? *u : ExecUser{};
}

TEST(ExecUserTest, NamesAndNumbersResolveAsRuncResolvesThem) {
  // No user: uid 0, with root's entry and its groups.
  auto root = resolved("");
  EXPECT_EQ(0u, root.uid);
  EXPECT_EQ(0u, root.gid);
  EXPECT_EQ(std::vector<std::uint32_t>{10}, root.additionalGids);
  EXPECT_EQ("/root", root.home);
  // A name: its entry, and the groups listing it by name.
  auto app = resolved("app");
  EXPECT_EQ(1000u, app.uid);
  EXPECT_EQ(1000u, app.gid);
  EXPECT_EQ((std::vector<std::uint32_t>{10, 29}), app.additionalGids);
  EXPECT_EQ("/home/app", app.home);
  // A number found: the entry's gid; not found: passes through, gid 0.
  EXPECT_EQ(65534u, resolved("65534").gid);
  auto stranger = resolved("4242");
  EXPECT_EQ(4242u, stranger.uid);
  EXPECT_EQ(0u, stranger.gid);
  EXPECT_TRUE(stranger.additionalGids.empty());
  EXPECT_EQ("/", stranger.home);
  // A group given: it alone, no additional ones.
  auto appAudio = resolved("app:audio");
  EXPECT_EQ(1000u, appAudio.uid);
  EXPECT_EQ(29u, appAudio.gid);
  EXPECT_TRUE(appAudio.additionalGids.empty());
  auto numbers = resolved("4242:4343");
  EXPECT_EQ(4242u, numbers.uid);
  EXPECT_EQ(4343u, numbers.gid);
  EXPECT_EQ(65534u, resolved("daemon:nogroup").gid);
  EXPECT_EQ(1u, resolved("1:1").gid);
  // No /etc/passwd or /etc/group: numbers still pass through.
  auto bare = resolved("7:8", std::nullopt, std::nullopt);
  EXPECT_EQ(7u, bare.uid);
  EXPECT_EQ(8u, bare.gid);
  EXPECT_EQ(0u, resolved("", std::nullopt, std::nullopt).uid);
}

TEST(ExecUserTest, AMissingNameIsAClearErrorAndABadNumberIsRefused) {
  auto missing = resolveExecUser("postgres", std::string(kPasswd), std::string(kGroup));
  ASSERT_TRUE(missing.isError());
  EXPECT_EQ(actors::ErrorKind::NotFound, missing.error().kind);
  EXPECT_NE(std::string::npos, missing.error().message.find("'postgres'")) << missing.error().message;
  EXPECT_NE(std::string::npos, missing.error().message.find("/etc/passwd")) << missing.error().message;

  auto noFile = resolveExecUser("app", std::nullopt, std::nullopt);
  ASSERT_TRUE(noFile.isError());
  EXPECT_NE(std::string::npos, noFile.error().message.find("has no /etc/passwd")) << noFile.error().message;

  auto group = resolveExecUser("app:video", std::string(kPasswd), std::string(kGroup));
  ASSERT_TRUE(group.isError());
  EXPECT_EQ(actors::ErrorKind::NotFound, group.error().kind);
  EXPECT_NE(std::string::npos, group.error().message.find("'video'")) << group.error().message;

  auto big = resolveExecUser("99999999999", std::string(kPasswd), std::string(kGroup));
  ASSERT_TRUE(big.isError());
  EXPECT_EQ(actors::ErrorKind::InvalidArgument, big.error().kind);
  EXPECT_TRUE(resolveExecUser("0:3000000000", std::string(kPasswd), std::string(kGroup)).isError());
}

class BundleFilesTest : public testing::TemporaryDirectoryTest {};

// An image's /etc/passwd that links out of the rootfs is resolved inside it:
// the host's file is never read.
TEST_F(BundleFilesTest, APasswdLinkIsResolvedInsideTheRootfs) {
  const fs::path rootfs = sandbox() / "rootfs";
  fs::create_directories(rootfs / "etc");
  fs::create_directories(sandbox() / "host");
  testing::writeFile(sandbox() / "host/passwd", "intruder:x:4000:4000::/:/bin/sh\n");
  fs::create_symlink(sandbox() / "host/passwd", rootfs / "etc/passwd");
  auto outside = resolveExecUser("intruder", rootfs.string());
  ASSERT_TRUE(outside.isError()) << "the host's file was read";
  EXPECT_EQ(actors::ErrorKind::NotFound, outside.error().kind);

  // The same absolute link, as the image means it, found inside.
  fs::create_directories(rootfs / sandbox().relative_path() / "host");
  testing::writeFile(rootfs / sandbox().relative_path() / "host/passwd", "insider:x:4001:4002::/:/bin/sh\n");
  auto inside = resolveExecUser("insider", rootfs.string());
  ASSERT_TRUE(inside.isSome()) << inside.error().message;
  EXPECT_EQ(4001u, inside->uid);
  EXPECT_EQ(4002u, inside->gid);

  // Not a regular file (a FIFO would block a reader, a device node acts on
  // the host's device when opened): refused before it is opened for reading.
  fs::remove(rootfs / "etc/passwd");
  ASSERT_EQ(0, ::mkfifo((rootfs / "etc/passwd").c_str(), 0644));
  auto fifo = resolveExecUser("insider", rootfs.string());
  ASSERT_TRUE(fifo.isError());
  EXPECT_NE(std::string::npos, fifo.error().message.find("not a regular file")) << fifo.error().message;
  fs::remove(rootfs / "etc/passwd");
  ASSERT_EQ(0, ::mknod((rootfs / "etc/passwd").c_str(), S_IFCHR | 0644, ::makedev(1, 3)));
  auto device = resolveExecUser("insider", rootfs.string());
  ASSERT_TRUE(device.isError());
  EXPECT_NE(std::string::npos, device.error().message.find("not a regular file")) << device.error().message;
}

rapidjson::Document parseJson(const std::string& text) {
  rapidjson::Document doc;
  doc.Parse(text.c_str());
  EXPECT_FALSE(doc.HasParseError()) << text;
  return doc;
}

std::vector<std::string> stringsAt(const rapidjson::Value& array) {
  std::vector<std::string> out;
  for (const auto& v : array.GetArray()) out.emplace_back(v.GetString());
  return out;
}

TEST(RuntimeConfigTest, ArgsEnvCwdAndUserComeFromTheImage) {
  messages::ImageConfig image;
  image.add_entrypoint("/bin/app");
  image.add_cmd("--serve");
  image.add_env("LANG=C.UTF-8");
  image.set_working_dir("srv");
  image.set_os("linux");
  image.set_architecture("amd64");
  (*image.mutable_labels())["maintainer"] = "someone";
  ExecUser user;
  user.uid = 1000;
  user.gid = 1000;
  user.additionalGids = {10, 29};
  BundleOptions options;
  options.hostname = "web_1";
  auto text = runtimeConfig(image, "/var/lib/x/rootfs", user, options);
  ASSERT_TRUE(text.isSome()) << text.error().message;
  auto doc = parseJson(*text);
  EXPECT_STREQ("1.0.2", doc["ociVersion"].GetString());
  const auto& process = doc["process"];
  EXPECT_FALSE(process["terminal"].GetBool());
  EXPECT_EQ((std::vector<std::string>{"/bin/app", "--serve"}), stringsAt(process["args"]));
  // PATH added (the image has none); no TERM without a terminal.
  EXPECT_EQ(
      (std::vector<std::string>{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C.UTF-8"}),
      stringsAt(process["env"]));
  EXPECT_STREQ("/srv", process["cwd"].GetString());
  EXPECT_EQ(1000u, process["user"]["uid"].GetUint());
  EXPECT_EQ(1000u, process["user"]["gid"].GetUint());
  EXPECT_EQ(2u, process["user"]["additionalGids"].Size());
  // Not root: bounding only.
  EXPECT_EQ(14u, process["capabilities"]["bounding"].Size());
  EXPECT_EQ(0u, process["capabilities"]["effective"].Size());
  EXPECT_EQ(0u, process["capabilities"]["permitted"].Size());
  EXPECT_FALSE(process["capabilities"].HasMember("ambient"));
  EXPECT_FALSE(process["capabilities"].HasMember("inheritable"));
  EXPECT_TRUE(process["noNewPrivileges"].GetBool());
  EXPECT_STREQ("/var/lib/x/rootfs", doc["root"]["path"].GetString());
  EXPECT_FALSE(doc["root"]["readonly"].GetBool());
  EXPECT_STREQ("web-1", doc["hostname"].GetString());
  std::vector<std::string> mounts;
  for (const auto& m : doc["mounts"].GetArray()) mounts.emplace_back(m["destination"].GetString());
  EXPECT_EQ(
      (std::vector<std::string>{"/proc", "/dev", "/dev/pts", "/dev/shm", "/dev/mqueue", "/sys", "/sys/fs/cgroup"}),
      mounts);
  std::vector<std::string> namespaces;
  for (const auto& n : doc["linux"]["namespaces"].GetArray()) namespaces.emplace_back(n["type"].GetString());
  EXPECT_EQ((std::vector<std::string>{"pid", "network", "ipc", "uts", "mount"}), namespaces);
  EXPECT_GE(doc["linux"]["maskedPaths"].Size(), 10u);
  EXPECT_EQ(5u, doc["linux"]["readonlyPaths"].Size());
  // Labels are not annotations: runtimes act on some (org.systemd.property.*, run.oci.*).
  EXPECT_FALSE(doc["annotations"].HasMember("maintainer"));
  EXPECT_STREQ("amd64", doc["annotations"]["org.opencontainers.image.architecture"].GetString());

  // Root gets the set in effective and permitted too.
  auto rootText = runtimeConfig(image, "/r", ExecUser{}, options);
  ASSERT_TRUE(rootText.isSome());
  auto rootDoc = parseJson(*rootText);
  EXPECT_EQ(14u, rootDoc["process"]["capabilities"]["effective"].Size());
  EXPECT_FALSE(rootDoc["process"]["user"].HasMember("additionalGids"));
}

TEST(RuntimeConfigTest, OverridesAreDockersAndNothingToRunIsAnError) {
  messages::ImageConfig image;
  image.add_entrypoint("/bin/app");
  image.add_cmd("--serve");
  image.add_env("PATH=/bin");
  BundleOptions options;
  options.cmd = std::vector<std::string>{"--check"};
  options.terminal = true;
  auto doc = parseJson(*runtimeConfig(image, "/r", ExecUser{}, options));
  EXPECT_EQ((std::vector<std::string>{"/bin/app", "--check"}), stringsAt(doc["process"]["args"]));
  EXPECT_TRUE(doc["process"]["terminal"].GetBool());
  EXPECT_EQ((std::vector<std::string>{"PATH=/bin", "TERM=xterm"}), stringsAt(doc["process"]["env"]));
  EXPECT_STREQ("/", doc["process"]["cwd"].GetString());

  // A new entrypoint drops the image's Cmd.
  options = BundleOptions{};
  options.entrypoint = std::vector<std::string>{"/bin/sh"};
  doc = parseJson(*runtimeConfig(image, "/r", ExecUser{}, options));
  EXPECT_EQ(std::vector<std::string>{"/bin/sh"}, stringsAt(doc["process"]["args"]));

  // Nothing at all.
  messages::ImageConfig empty;
  auto none = runtimeConfig(empty, "/r", ExecUser{}, BundleOptions{});
  ASSERT_TRUE(none.isError());
  EXPECT_EQ(actors::ErrorKind::InvalidArgument, none.error().kind);
  EXPECT_NE(std::string::npos, none.error().message.find("neither Entrypoint nor Cmd")) << none.error().message;
}

// ---- through the Provisioner, and runc ---------------------------------------

// Runnable images from Debian's busybox-static in an OCI layout.
class BundleTest : public testing::TemporaryDirectoryTest {
 protected:
  void SetUp() override {
    TemporaryDirectoryTest::SetUp();
    workDir_ = sandbox() / "work";

    testing::ImageSpec busybox;
    busybox.architecture = fetcher::hostPlatform().architecture();
    busybox.layers = {baseLayer()};
    busybox.env = {"PATH=/bin"};
    busybox.cmd = {"/bin/sh", "-c", "echo uid=$(id -u) gid=$(id -g); pwd; env | sort"};
    busybox.workingDir = "/tmp";
    addImage(busybox, "busybox");

    testing::ImageSpec app = busybox;
    app.layers.push_back(
        {TarEntry::directory("srv"), TarEntry::directory("srv/app", 0777), TarEntry::file("srv/app/VERSION", "1.2.3")});
    app.user = "nobody";
    app.workingDir = "/srv/app";
    app.env = {"PATH=/bin", "GREETING=hello there", "MODE=test"};
    app.entrypoint = {"/bin/sh", "-c",
                      "echo uid=$(id -u) gid=$(id -g) groups=$(id -G); pwd; env | sort; "
                      "echo args: $@; cat VERSION",
                      "entry"};
    app.cmd = {"first", "second"};
    addImage(app, "app");
    start();
  }

  void TearDown() override {
    for (const auto& id : runcIds_) testing::runCommand({"runc", "--root", runcRoot().string(), "delete", "-f", id});
    if (provisioner_) fixture::destroyAll(*provisioner_);
    provisioner_.reset();
    EXPECT_EQ(std::vector<std::string>{}, testing::mountsUnder(sandbox())) << "a mount leaked";
    TemporaryDirectoryTest::TearDown();
  }

  static std::vector<TarEntry> baseLayer() {
    std::vector<TarEntry> entries = {TarEntry::directory("bin"),
                                     TarEntry::file("bin/busybox", testing::readFile("/bin/busybox"), 0755),
                                     TarEntry::directory("tmp", 01777),
                                     TarEntry::directory("etc"),
                                     TarEntry::file("etc/passwd",
                                                    "root:x:0:0:root:/root:/bin/sh\n"
                                                    "nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"),
                                     TarEntry::file("etc/group", "root:x:0:\nstaff:x:50:nobody\nnogroup:x:65534:\n")};
    for (const char* tool : {"sh", "echo", "id", "pwd", "env", "sort", "cat", "touch"}) {
      entries.push_back(TarEntry::symlink(std::string("bin/") + tool, "busybox"));
    }
    return entries;
  }

  void start(const std::set<std::string>& known = {}) {
    provisioner_.reset();
    Flags flags;
    flags.workDir = workDir_.string();
    flags.imageProviders = "docker";
    flags.imageProvisionerBackend = backendName();
    auto created = Provisioner::create(flags, runtime_);
    ASSERT_TRUE(created.isSome()) << created.error().message;
    provisioner_ = std::move(*created);
    AWAIT_READY(provisioner_->recover(known));
  }

  // An OCI layout of its own (a layout's index.json lists one tag here).
  void addImage(const testing::ImageSpec& spec, const std::string& tag) {
    testing::OciLayout layout(sandbox() / ("layout-" + tag));
    layout.tag(layout.addImage(spec), tag);
  }

  virtual std::string backendName() const { return backend::kOverlay; }

  messages::Image image(const std::string& tag) const {
    auto parsed = parseImage("oci:" + (sandbox() / ("layout-" + tag)).string() + ":" + tag);
    EXPECT_TRUE(parsed.isSome());
    return parsed.isSome() ? *parsed : messages::Image{};
  }

  ProvisionInfo provision(const std::string& id, const std::string& tag) {
    auto info = provisioner_->provision(id, image(tag));
    AWAIT_EXPECT_READY(info);
    return info.isReady() ? info.get() : ProvisionInfo{};
  }

  fs::path runcRoot() const { return sandbox() / "runc"; }

  // runc run in the bundle: its exit status and output.
  testing::CommandResult runc(const fs::path& bundle) {
    const std::string id = "prov-test-" + actors::uuid().substr(0, 8);
    runcIds_.push_back(id);
    return testing::runCommand({"runc", "--root", runcRoot().string(), "run", "--bundle", bundle.string(), id});
  }

  actors::Runtime runtime_;
  fs::path workDir_;
  std::unique_ptr<Provisioner> provisioner_;
  std::vector<std::string> runcIds_;
};

TEST_F(BundleTest, ABundleIsPrivateRecordedAndGoesWithDestroy) {
  auto info = provision("c1", "busybox");
  const fs::path dir = sandbox() / "bundles/c1";
  fs::create_directories(dir.parent_path());
  BundleOptions options;
  options.dir = dir.string();
  AWAIT_EXPECT_EQ(dir.string(), provisioner_->writeBundle("c1", info, options));
  struct stat st {};
  ASSERT_EQ(0, ::stat(dir.c_str(), &st));
  EXPECT_EQ(0700u, st.st_mode & 07777);
  EXPECT_EQ(fs::path(info.rootfs), fs::read_symlink(dir / "rootfs"));
  auto doc = parseJson(testing::readFile(dir / "config.json"));
  EXPECT_EQ(info.rootfs, doc["root"]["path"].GetString());
  EXPECT_STREQ("c1", doc["hostname"].GetString());

  // In the record, with its rootfs.
  messages::ContainerRecord record;
  ASSERT_TRUE(record.ParseFromString(testing::readFile(fixture::containerDir(workDir_, "c1") / "layers")));
  ASSERT_EQ(1, record.rootfses_size());
  EXPECT_EQ(dir.string(), record.rootfses(0).bundle());

  // One per rootfs.
  options.dir = (sandbox() / "bundles/again").string();
  auto again = provisioner_->writeBundle("c1", info, options);
  AWAIT_FAILED(again);
  EXPECT_EQ(actors::ErrorKind::AlreadyExists, again.failure().kind);
  EXPECT_FALSE(fs::exists(sandbox() / "bundles/again"));

  AWAIT_ASSERT_EQ(true, provisioner_->destroy("c1"));
  EXPECT_FALSE(fs::exists(dir));
  EXPECT_TRUE(fs::exists(dir.parent_path())) << "only what it made goes";
}

TEST_F(BundleTest, AnExistingDirectoryOrAMissingUserChangesNothing) {
  auto info = provision("c1", "busybox");
  const fs::path dir = sandbox() / "mine";
  fs::create_directories(dir);
  testing::writeFile(dir / "config.json", "my own");
  BundleOptions options;
  options.dir = dir.string();
  auto taken = provisioner_->writeBundle("c1", info, options);
  AWAIT_FAILED(taken);
  EXPECT_EQ(actors::ErrorKind::AlreadyExists, taken.failure().kind);
  EXPECT_NE(std::string::npos, taken.failure().message.find(dir.string())) << taken.failure().message;

  // A user the image does not have: NotFound naming it, no directory.
  ProvisionInfo strange = info;
  auto withUser = std::make_shared<messages::StoredImage>(*info.image);
  withUser->mutable_config()->set_user("postgres");
  strange.image = withUser;
  options.dir = (sandbox() / "strange").string();
  auto missing = provisioner_->writeBundle("c1", strange, options);
  AWAIT_FAILED(missing);
  EXPECT_EQ(actors::ErrorKind::NotFound, missing.failure().kind);
  EXPECT_NE(std::string::npos, missing.failure().message.find("'postgres'")) << missing.failure().message;
  EXPECT_FALSE(fs::exists(sandbox() / "strange"));

  // A ProvisionInfo without its image: InvalidArgument, no directory.
  ProvisionInfo imageless = info;
  imageless.image.reset();
  options.dir = (sandbox() / "imageless").string();
  auto noImage = provisioner_->writeBundle("c1", imageless, options);
  AWAIT_FAILED(noImage);
  EXPECT_EQ(actors::ErrorKind::InvalidArgument, noImage.failure().kind);
  EXPECT_NE(std::string::npos, noImage.failure().message.find("no image")) << noImage.failure().message;
  EXPECT_FALSE(fs::exists(sandbox() / "imageless"));

  // Neither is recorded; a relative directory and an unknown container are refused.
  messages::ContainerRecord record;
  ASSERT_TRUE(record.ParseFromString(testing::readFile(fixture::containerDir(workDir_, "c1") / "layers")));
  EXPECT_EQ("", record.rootfses(0).bundle());
  options.dir = "relative";
  AWAIT_FAILED(provisioner_->writeBundle("c1", info, options));
  options.dir = (sandbox() / "other").string();
  AWAIT_FAILED(provisioner_->writeBundle("c9", info, options));
  EXPECT_FALSE(fs::exists(sandbox() / "other"));

  AWAIT_ASSERT_EQ(true, provisioner_->destroy("c1"));
  EXPECT_EQ("my own", testing::readFile(dir / "config.json")) << "a directory that was there is not ours";
}

// The path to a bundle changed under it (a parent swapped for a symlink,
// the directory replaced by somebody else's): destroy touches none of what
// it then reaches, and the rootfs goes anyway.
TEST_F(BundleTest, DestroyNeverFollowsASwappedPathToSomebodyElsesFiles) {
  auto first = provision("c1", "busybox");
  auto second = provision("c2", "busybox");
  fs::create_directories(sandbox() / "p");
  BundleOptions options;
  options.dir = (sandbox() / "p/b1").string();
  AWAIT_READY(provisioner_->writeBundle("c1", first, options));
  options.dir = (sandbox() / "p/b2").string();
  AWAIT_READY(provisioner_->writeBundle("c2", second, options));

  // p becomes a link to q, where b1 is somebody else's bundle.
  fs::rename(sandbox() / "p", sandbox() / "p-moved");
  fs::create_directories(sandbox() / "q/b1");
  testing::writeFile(sandbox() / "q/b1/config.json", "theirs");
  fs::create_symlink(sandbox() / "q", sandbox() / "p");
  AWAIT_ASSERT_EQ(true, provisioner_->destroy("c1"));
  EXPECT_EQ("theirs", testing::readFile(sandbox() / "q/b1/config.json"));
  EXPECT_FALSE(fs::exists(first.rootfs));

  // b2 replaced by a directory of somebody else's, at the same path.
  fs::remove(sandbox() / "p");
  fs::rename(sandbox() / "p-moved", sandbox() / "p");
  fs::remove_all(sandbox() / "p/b2");
  fs::create_directories(sandbox() / "p/b2");
  testing::writeFile(sandbox() / "p/b2/config.json", R"({"root": {"path": "/elsewhere"}})");
  AWAIT_ASSERT_EQ(true, provisioner_->destroy("c2"));
  EXPECT_TRUE(fs::exists(sandbox() / "p/b2/config.json"));
  EXPECT_FALSE(fs::exists(second.rootfs));
}

// A parent given through a symlink is recorded as the path it resolves to.
TEST_F(BundleTest, TheRecordNamesTheResolvedDirectory) {
  auto info = provision("c1", "busybox");
  fs::create_directories(sandbox() / "real");
  fs::create_symlink(sandbox() / "real", sandbox() / "alias");
  BundleOptions options;
  options.dir = (sandbox() / "alias/b").string();
  AWAIT_EXPECT_EQ((sandbox() / "real/b").string(), provisioner_->writeBundle("c1", info, options));
  EXPECT_TRUE(fs::exists(sandbox() / "real/b/config.json"));
  AWAIT_ASSERT_EQ(true, provisioner_->destroy("c1"));
  EXPECT_FALSE(fs::exists(sandbox() / "real/b"));
}

// What somebody else put in the bundle stays (with the directory); recover
// removes the bundles of containers that are gone.
TEST_F(BundleTest, RecoverRemovesTheBundlesOfContainersThatAreGone) {
  auto kept = provision("kept", "busybox");
  auto gone = provision("gone", "busybox");
  BundleOptions options;
  options.dir = (sandbox() / "kept-bundle").string();
  AWAIT_READY(provisioner_->writeBundle("kept", kept, options));
  options.dir = (sandbox() / "gone-bundle").string();
  AWAIT_READY(provisioner_->writeBundle("gone", gone, options));
  testing::writeFile(sandbox() / "gone-bundle/runc.pid", "123");

  start({"kept"});
  EXPECT_TRUE(fs::exists(sandbox() / "kept-bundle/config.json"));
  EXPECT_FALSE(fs::exists(sandbox() / "gone-bundle/config.json"));
  EXPECT_FALSE(fs::exists(sandbox() / "gone-bundle/rootfs"));
  EXPECT_TRUE(fs::exists(sandbox() / "gone-bundle/runc.pid")) << "not ours: it stays";
}

// Records from before bundles (no field 7) recover and destroy as they did.
TEST_F(BundleTest, ARecordFromBeforeBundlesRecoversAndDestroys) {
  auto info = provision("old", "busybox");
  messages::ContainerRecord record;
  const fs::path file = fixture::containerDir(workDir_, "old") / "layers";
  ASSERT_TRUE(record.ParseFromString(testing::readFile(file)));
  ASSERT_EQ(1, record.rootfses_size());
  // Written as the previous release wrote it: fields 1-6 only.
  messages::ContainerRecord previous;
  auto* r = previous.add_rootfses();
  r->set_id(record.rootfses(0).id());
  r->set_backend(record.rootfses(0).backend());
  r->set_image_key(record.rootfses(0).image_key());
  *r->mutable_layers() = record.rootfses(0).layers();
  r->set_config(record.rootfses(0).config());
  testing::writeFile(file, previous.SerializeAsString());
  start({"old"});
  auto containers = provisioner_->containers();
  AWAIT_READY(containers);
  ASSERT_EQ(1u, containers->size());
  EXPECT_EQ("", containers->at(0).rootfses.at(0).bundle());
  BundleOptions options;
  options.dir = (sandbox() / "late").string();
  AWAIT_READY(provisioner_->writeBundle("old", info, options));
  AWAIT_ASSERT_EQ(true, provisioner_->destroy("old"));
  EXPECT_FALSE(fs::exists(sandbox() / "late"));
  EXPECT_FALSE(fs::exists(info.rootfs));
}

class RuncTest : public BundleTest, public ::testing::WithParamInterface<const char*> {
 protected:
  std::string backendName() const override { return GetParam(); }
};

TEST_P(RuncTest, RunsTheBusyboxImageAsItSays) {
  auto info = provision("c1", "busybox");
  BundleOptions options;
  options.dir = (sandbox() / "b1").string();
  AWAIT_READY(provisioner_->writeBundle("c1", info, options));
  auto ran = runc(options.dir);
  ASSERT_EQ(0, ran.status) << ran.output;
  EXPECT_NE(std::string::npos, ran.output.find("uid=0 gid=0\n/tmp\n")) << ran.output;
  EXPECT_NE(std::string::npos, ran.output.find("PATH=/bin\n")) << ran.output;
  EXPECT_NE(std::string::npos, ran.output.find("HOME=/root\n")) << ran.output;
}

TEST_P(RuncTest, RunsTheUserWorkingDirEnvAndEntrypointOfTheImage) {
  auto info = provision("c1", "app");
  BundleOptions options;
  options.dir = (sandbox() / "b1").string();
  AWAIT_READY(provisioner_->writeBundle("c1", info, options));
  auto ran = runc(options.dir);
  ASSERT_EQ(0, ran.status) << ran.output;
  EXPECT_NE(std::string::npos, ran.output.find("uid=65534 gid=65534 groups=65534 50\n/srv/app\n")) << ran.output;
  EXPECT_NE(std::string::npos, ran.output.find("GREETING=hello there\n")) << ran.output;
  EXPECT_NE(std::string::npos, ran.output.find("MODE=test\n")) << ran.output;
  EXPECT_NE(std::string::npos, ran.output.find("HOME=/nonexistent\n")) << ran.output;
  EXPECT_NE(std::string::npos, ran.output.find("args: first second\n1.2.3")) << ran.output;

  // Cmd replaced, Entrypoint kept: `docker run IMAGE ARGS...`.
  auto second = provision("c2", "app");
  options.dir = (sandbox() / "b2").string();
  options.cmd = std::vector<std::string>{"third"};
  AWAIT_READY(provisioner_->writeBundle("c2", second, options));
  ran = runc(options.dir);
  ASSERT_EQ(0, ran.status) << ran.output;
  EXPECT_NE(std::string::npos, ran.output.find("args: third\n")) << ran.output;
}

// The container's writes land in its own rootfs (overlay: the upper dir),
// never in the store's layers, and go with destroy.
TEST_P(RuncTest, TheContainersWritesStayItsOwnAndGoWithDestroy) {
  auto info = provision("c1", "app");
  BundleOptions options;
  options.dir = (sandbox() / "b1").string();
  options.entrypoint = std::vector<std::string>{"/bin/sh", "-c", "echo written > /srv/app/out; touch /tmp/mark"};
  AWAIT_READY(provisioner_->writeBundle("c1", info, options));
  auto ran = runc(options.dir);
  ASSERT_EQ(0, ran.status) << ran.output;
  EXPECT_EQ("written\n", testing::readFile(fs::path(info.rootfs) / "srv/app/out"));
  const fs::path container = fixture::containerDir(workDir_, "c1");
  if (backendName() == backend::kOverlay) {
    const fs::path upper = container / "backends/overlay/scratch" / fs::path(info.rootfs).filename() / "upperdir";
    EXPECT_EQ("written\n", testing::readFile(upper / "srv/app/out"));
    EXPECT_TRUE(fs::exists(upper / "tmp/mark"));
  }
  for (const auto& entry : fs::recursive_directory_iterator(workDir_ / "store")) {
    EXPECT_NE("out", entry.path().filename()) << entry.path() << ": a write reached the store";
  }
  AWAIT_ASSERT_EQ(true, provisioner_->destroy("c1"));
  EXPECT_FALSE(fs::exists(container));
  EXPECT_FALSE(fs::exists(options.dir));
}

INSTANTIATE_TEST_SUITE_P(Backends, RuncTest, ::testing::Values(backend::kOverlay, backend::kCopy));

}  // namespace
}  // namespace prov::provisioner
